//! dlib's serialisation primitives (dlib/serialize.h, dlib/float_details.h, dnn/tensor.h).
//!
//! Every read checks the bytes it needs against what is left, so a truncated or corrupt file
//! gives a [`DlibError`] and never a panic or an allocation larger than the file.

use crate::DlibError;

/// `float_details` exponents that stand for the non-finite values.
pub const EXP_INF: i64 = 32000;
pub const EXP_NEG_INF: i64 = 32001;
pub const EXP_NAN: i64 = 32002;

/// A `resizable_tensor`: shape `(n, k, nr, nc)` and its float32 values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

/// A cursor over a dlib byte stream (`Copy`, so a caller can read ahead on a copy).
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DlibError> {
        if n > self.remaining() {
            return Err(DlibError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// `pack_int`: a control byte (low nibble = byte count 1..8, 0x80 = negative) and the
    /// magnitude little-endian. dlib never sets bits 0x70 nor writes a zero count, so those
    /// are errors here rather than silently ignored.
    pub fn int(&mut self) -> Result<i64, DlibError> {
        let offset = self.pos;
        let control = self.take(1)?[0];
        let len = usize::from(control & 0x0f);
        if control & 0x70 != 0 || len == 0 || len > 8 {
            return Err(DlibError::BadInteger { offset, control });
        }
        let magnitude = self
            .take(len)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let value = if control & 0x80 != 0 {
            -i128::from(magnitude)
        } else {
            i128::from(magnitude)
        };
        i64::try_from(value).map_err(|_| DlibError::OutOfRange {
            offset,
            what: "int64",
            value,
        })
    }

    /// An integer that must lie in `0..=max` (sizes, counts, layer geometry).
    pub fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DlibError> {
        let offset = self.pos;
        let value = self.int()?;
        usize::try_from(value)
            .ok()
            .filter(|&v| v <= max)
            .ok_or(DlibError::OutOfRange {
                offset,
                what,
                value: value.into(),
            })
    }

    /// An integer that must equal `expected` (format versions, enum values).
    pub fn expect_int(&mut self, what: &'static str, expected: i64) -> Result<(), DlibError> {
        let offset = self.pos;
        let found = self.int()?;
        if found != expected {
            return Err(DlibError::Unexpected {
                offset,
                what,
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
        Ok(())
    }

    /// `float_details`: mantissa (int64) and exponent (int16), value = mantissa · 2^exponent,
    /// with exponents 32000/32001/32002 meaning +inf/−inf/NaN.
    pub fn float(&mut self) -> Result<f64, DlibError> {
        let mantissa = self.int()?;
        let offset = self.pos;
        let exponent = self.int()?;
        match exponent {
            EXP_INF => Ok(f64::INFINITY),
            EXP_NEG_INF => Ok(f64::NEG_INFINITY),
            EXP_NAN => Ok(f64::NAN),
            -32768..EXP_INF => Ok(ldexp(mantissa, exponent as i32)),
            _ => Err(DlibError::OutOfRange {
                offset,
                what: "float exponent",
                value: exponent.into(),
            }),
        }
    }

    /// A string: unsigned length, then the bytes (dlib writes ASCII layer names).
    pub fn string(&mut self) -> Result<String, DlibError> {
        let offset = self.pos;
        let len = self.count("string length", usize::MAX)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DlibError::Unexpected {
            offset,
            what: "string",
            expected: "UTF-8".into(),
            found: format!("{len} bytes of binary"),
        })
    }

    /// dlib writes bools as the ASCII characters '1' and '0'.
    pub fn bool(&mut self) -> Result<bool, DlibError> {
        let offset = self.pos;
        match self.take(1)?[0] {
            b'1' => Ok(true),
            b'0' => Ok(false),
            byte => Err(DlibError::BadBool { offset, byte }),
        }
    }

    fn shape(&mut self) -> Result<[usize; 4], DlibError> {
        let offset = self.pos;
        let mut shape = [0; 4];
        for d in &mut shape {
            *d = self.count("tensor dimension", usize::MAX)?;
        }
        // Callers multiply these (by 4 for bytes): refuse what cannot be a real size.
        match numel(&shape).and_then(|n| n.checked_mul(4)) {
            Some(_) => Ok(shape),
            None => Err(DlibError::OutOfRange {
                offset,
                what: "tensor size",
                value: shape.iter().map(|&d| d as i128).product(),
            }),
        }
    }

    /// `resizable_tensor`: version 2, (n, k, nr, nc), then n·k·nr·nc little-endian float32.
    pub fn tensor(&mut self) -> Result<Tensor, DlibError> {
        self.expect_int("tensor version", 2)?;
        let shape = self.shape()?;
        // `shape` checked that this product fits; `take` checks it against the bytes left
        // before anything is allocated.
        let bytes = shape.iter().product::<usize>() * 4;
        let data = self
            .take(bytes)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Tensor { shape, data })
    }

    /// `alias_tensor`: version 1 and a shape; the values live in the layer's params tensor.
    pub fn alias(&mut self) -> Result<[usize; 4], DlibError> {
        self.expect_int("alias_tensor version", 1)?;
        self.shape()
    }
}

/// Element count of a shape (dimensions were bounded by the file size when read; the product
/// is checked anyway).
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// `m · 2^e` as `std::ldexp` computes it. The power is applied in steps of at most 2^±1000
/// (each exactly representable) so huge exponents saturate to 0 or ±inf instead of
/// overflowing the factor. dlib writes mantissas of at most 53 bits, so `m as f64` is exact.
fn ldexp(mantissa: i64, mut exponent: i32) -> f64 {
    let mut x = mantissa as f64;
    while exponent > 1000 && x.is_finite() {
        x *= 2f64.powi(1000);
        exponent -= 1000;
    }
    while exponent < -1000 && x != 0.0 {
        x *= 2f64.powi(-1000);
        exponent += 1000;
    }
    x * 2f64.powi(exponent.clamp(-1000, 1000))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// dlib's `pack_int`, for building test streams.
    pub fn int(value: i64) -> Vec<u8> {
        let mut mag = value.unsigned_abs();
        let mut bytes = Vec::new();
        loop {
            bytes.push((mag & 0xff) as u8);
            mag >>= 8;
            if mag == 0 {
                break;
            }
        }
        let control = bytes.len() as u8 | if value < 0 { 0x80 } else { 0 };
        [vec![control], bytes].concat()
    }

    /// dlib's `float_details` for a double, including its trailing-zero-byte compaction.
    pub fn float(value: f64) -> Vec<u8> {
        let (mut m, mut e): (i64, i64) = if value.is_nan() {
            (0, EXP_NAN)
        } else if value == f64::INFINITY {
            (0, EXP_INF)
        } else if value == f64::NEG_INFINITY {
            (0, EXP_NEG_INF)
        } else {
            // frexp(value) · 2^53 is the 53-bit significand; its exponent is the biased one
            // minus 1075 (subnormals: the raw fraction, exponent -1074).
            let bits = value.to_bits();
            let biased = ((bits >> 52) & 0x7ff) as i64;
            let fraction = (bits & ((1 << 52) - 1)) as i64;
            let (m, e) = match biased {
                0 => (fraction, -1074),
                _ => (fraction | (1 << 52), biased - 1075),
            };
            (if value < 0.0 { -m } else { m }, if m == 0 { -53 } else { e })
        };
        if e < EXP_INF {
            for _ in 0..8 {
                if m & 0xff != 0 {
                    break;
                }
                m >>= 8;
                e += 8;
            }
        }
        [int(m), int(e)].concat()
    }

    pub fn string(s: &str) -> Vec<u8> {
        [int(s.len() as i64), s.as_bytes().to_vec()].concat()
    }

    pub fn tensor(shape: [i64; 4], data: &[f32]) -> Vec<u8> {
        let mut out = int(2);
        shape.iter().for_each(|&d| out.extend(int(d)));
        data.iter().for_each(|v| out.extend(v.to_le_bytes()));
        out
    }

    pub fn alias(shape: [i64; 4]) -> Vec<u8> {
        let mut out = int(1);
        shape.iter().for_each(|&d| out.extend(int(d)));
        out
    }

    #[test]
    fn integers_decode_sign_and_little_endian_magnitude() {
        let cases: &[(&[u8], i64)] = &[
            (&[0x01, 0x00], 0),
            (&[0x01, 0x02], 2),
            (&[0x81, 0x04], -4),
            (&[0x02, 0x80, 0x12], 0x1280),
            (&[0x82, 0x00, 0x01], -256),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], i64::MAX),
            (&[0x88, 0, 0, 0, 0, 0, 0, 0, 0x80], i64::MIN),
            // dlib reads a non-minimal width too.
            (&[0x04, 0x05, 0, 0, 0], 5),
        ];
        for (bytes, want) in cases {
            let mut r = Reader::new(bytes);
            assert_eq!(r.int().unwrap(), *want, "{bytes:02x?}");
            assert_eq!(r.remaining(), 0);
        }
        for v in [0, 1, -1, 255, 256, -65536, i64::MAX, i64::MIN + 1] {
            assert_eq!(Reader::new(&int(v)).int().unwrap(), v);
        }
    }

    #[test]
    fn malformed_integers_are_typed_errors() {
        for control in [0x00, 0x80, 0x09, 0x0f, 0x11, 0x41] {
            assert!(
                matches!(
                    Reader::new(&[control, 0, 0, 0, 0, 0, 0, 0, 0, 0]).int(),
                    Err(DlibError::BadInteger { .. })
                ),
                "{control:#x}"
            );
        }
        // 2^63 positive does not fit an int64.
        assert!(matches!(
            Reader::new(&[0x08, 0, 0, 0, 0, 0, 0, 0, 0x80]).int(),
            Err(DlibError::OutOfRange { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x01, 0x05]).count("n", 4),
            Err(DlibError::OutOfRange { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x81, 0x01]).count("n", 4),
            Err(DlibError::OutOfRange { .. })
        ));
    }

    #[test]
    fn floats_are_mantissa_times_two_to_the_exponent() {
        // Bytes as they appear in the model file: the loss margin 0.04f and threshold 0.6f,
        // a learning-rate multiplier 1.0 (16 · 2^-4) and a decay multiplier 0.0 (0 · 2^11).
        let mut r = Reader::new(&[
            0x03, 0x0a, 0xd7, 0xa3, 0x81, 0x1c, 0x03, 0x9a, 0x99, 0x99, 0x81, 0x18, 0x01, 0x10, 0x81, 0x04, 0x01, 0x00,
            0x01, 0x0b,
        ]);
        assert_eq!(r.float().unwrap() as f32, 0.04f32);
        assert_eq!(r.float().unwrap() as f32, 0.6f32);
        assert_eq!(r.float().unwrap(), 1.0);
        assert_eq!(r.float().unwrap(), 0.0);
        assert_eq!(r.remaining(), 0);
        // Negative mantissa, positive exponent.
        assert_eq!(Reader::new(&[0x81, 0x03, 0x01, 0x02]).float().unwrap(), -12.0);
        for v in [122.782f64, -1e-30, 3.5e300, f64::MIN_POSITIVE, 5e-324, -0.75] {
            assert_eq!(Reader::new(&float(v)).float().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn float_exponent_special_values() {
        let special = |e: i64| Reader::new(&[int(0), int(e)].concat()).float();
        assert_eq!(special(32000).unwrap(), f64::INFINITY);
        assert_eq!(special(32001).unwrap(), f64::NEG_INFINITY);
        assert!(special(32002).unwrap().is_nan());
        assert!(matches!(special(32003), Err(DlibError::OutOfRange { .. })));
        assert!(matches!(special(-32769), Err(DlibError::OutOfRange { .. })));
        // Extreme but legal exponents saturate rather than overflow.
        assert_eq!(special(31999).unwrap(), 0.0);
        assert_eq!(
            Reader::new(&[int(1), int(31999)].concat()).float().unwrap(),
            f64::INFINITY
        );
        assert_eq!(Reader::new(&[int(-1), int(-32768)].concat()).float().unwrap(), -0.0);
        assert_eq!(
            Reader::new(&[int(1 << 40), int(-1114)].concat()).float().unwrap(),
            2f64.powi(-1074)
        );
    }

    #[test]
    fn strings_bools_tensors_and_aliases() {
        let mut bytes = string("con_4");
        bytes.extend(b"10");
        bytes.extend(tensor([2, 1, 1, 1], &[1.5, -2.0]));
        bytes.extend(alias([1, 32, 1, 1]));
        let mut r = Reader::new(&bytes);
        assert_eq!(r.string().unwrap(), "con_4");
        assert!(r.bool().unwrap());
        assert!(!r.bool().unwrap());
        assert_eq!(
            r.tensor().unwrap(),
            Tensor {
                shape: [2, 1, 1, 1],
                data: vec![1.5, -2.0]
            }
        );
        assert_eq!(r.alias().unwrap(), [1, 32, 1, 1]);
        assert_eq!(r.remaining(), 0);
        assert!(matches!(
            Reader::new(b"x").bool(),
            Err(DlibError::BadBool { byte: b'x', .. })
        ));
        assert!(matches!(
            Reader::new(&tensor([1, 1, 1, 1], &[0.0])[..]).alias(),
            Err(DlibError::Unexpected { .. })
        ));
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let mut bytes = string("affine_");
        bytes.extend(float(0.6));
        bytes.extend(tensor([3, 1, 1, 1], &[1.0, 2.0, 3.0]));
        let read_all = |b: &[u8]| -> Result<(), DlibError> {
            let mut r = Reader::new(b);
            r.string()?;
            r.float()?;
            r.tensor()?;
            Ok(())
        };
        read_all(&bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                matches!(read_all(&bytes[..cut]), Err(DlibError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        // A huge claimed size is refused before allocating.
        let mut huge = int(2);
        for d in [i64::MAX, 1, 1, 1] {
            huge.extend(int(d));
        }
        assert!(matches!(Reader::new(&huge).tensor(), Err(DlibError::OutOfRange { .. })));
        let mut overflow = int(2);
        for _ in 0..4 {
            overflow.extend(int(1 << 20));
        }
        assert!(matches!(
            Reader::new(&overflow).tensor(),
            Err(DlibError::OutOfRange { .. })
        ));
        let mut short = int(2);
        for d in [1 << 20, 1, 1, 1] {
            short.extend(int(d));
        }
        short.extend([0; 64]);
        assert!(matches!(Reader::new(&short).tensor(), Err(DlibError::Truncated { .. })));
        // A string length beyond the stream.
        assert!(matches!(
            Reader::new(&[0x01, 0x09, b'a']).string(),
            Err(DlibError::Truncated { .. })
        ));
    }
}
