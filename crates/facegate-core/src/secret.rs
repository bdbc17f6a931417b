//! Buffers that hold biometric data. They are wiped when dropped and never print their
//! contents, so a stray `{:?}` cannot leak a face into a log.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Encoded image bytes (a selfie or an ID portrait).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ImageBytes(Vec<u8>);

impl ImageBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ImageBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageBytes({} bytes, redacted)", self.0.len())
    }
}

/// A face descriptor (template).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Descriptor(Vec<f32>);

impl Descriptor {
    pub fn new(values: Vec<f32>) -> Self {
        Self(values)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Descriptor({} dims, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_contents() {
        let d = Descriptor::new(vec![0.123_456, 0.5]);
        let s = format!("{d:?}");
        assert!(!s.contains("0.123") && s.contains("redacted"));
        let i = ImageBytes::new(b"secret-face".to_vec());
        assert!(!format!("{i:?}").contains("secret"));
    }

    #[test]
    fn zeroize_wipes_the_buffer() {
        let mut d = Descriptor::new(vec![1.0; 8]);
        d.zeroize();
        assert!(d.as_slice().iter().all(|&v| v == 0.0));
    }
}
