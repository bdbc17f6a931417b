//! A minimal pickle machine for `torch.save`'s legacy stream.
//!
//! Pickle is a little stack language whose GLOBAL/REDUCE opcodes import and call arbitrary
//! Python callables. We never call anything: GLOBAL accepts only the four names a state dict
//! needs (anything else is refused on sight), and REDUCE on those builds inert data —
//! an empty dict, or a tensor *description* (storage key, offset, shape, stride). Only the
//! opcodes protocol 2–4 use for such files are implemented; any other byte is an error.
//!
//! Objects live in one arena and the stack, memo and containers hold indices into it. That
//! keeps Python's sharing semantics (a memoised dict filled later is the same dict), costs
//! O(1) per BINGET however large the object, and cannot recurse on drop however deep the
//! nesting: every input produces at most one object per opcode.

use std::collections::HashMap;

use crate::TorchError;

pub type Id = usize;

/// The only importable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    FloatStorage,
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", "FloatStorage") => Global::FloatStorage,
            _ => return None,
        })
    }
}

/// A storage named by a persistent id: its data follows the pickles, keyed by `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub elements: usize,
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, not yet materialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    None,
    Bool(bool),
    /// Python ints; LONG1 up to 16 bytes (the legacy magic number needs 10).
    Int(i128),
    Float(f64),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// dict or OrderedDict: (key, value) pairs in insertion order.
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) => "int",
            Object::Float(_) => "float",
            Object::Str(_) => "str",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::Global(_) => "global",
            Object::Storage(_) => "storage",
            Object::Tensor(_) => "tensor",
        }
    }
}

/// The result of one pickle: its objects and the one STOP returned.
#[derive(Debug)]
pub struct Pickled {
    objects: Vec<Object>,
    pub root: Id,
}

impl Pickled {
    pub fn get(&self, id: Id) -> &Object {
        &self.objects[id]
    }

    pub fn root(&self) -> &Object {
        self.get(self.root)
    }

    /// Every object, for callers that need to see all storages a pickle named.
    pub fn objects(&self) -> &[Object] {
        &self.objects
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the current opcode started, for error messages.
    op_at: usize,
    objects: Vec<Object>,
    stack: Vec<Id>,
    /// Stack heights at each MARK; pops may not reach below the innermost.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

/// Run one pickle starting at `start`; returns it and the offset just past its STOP.
pub fn load(data: &[u8], start: usize) -> Result<(Pickled, usize), TorchError> {
    let mut m = Machine {
        data,
        pos: start,
        op_at: start,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    Ok((
        Pickled {
            objects: m.objects,
            root,
        },
        m.pos,
    ))
}

impl<'a> Machine<'a> {
    fn err(&self, what: impl Into<String>) -> TorchError {
        TorchError::Pickle {
            offset: self.op_at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TorchError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(TorchError::Truncated {
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn arg<const N: usize>(&mut self) -> Result<[u8; N], TorchError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<&'a str, TorchError> {
        let rest = &self.data[self.pos..];
        let len = rest.iter().position(|&b| b == b'\n').ok_or(TorchError::Truncated {
            offset: self.pos,
            needed: rest.len() + 1,
            available: rest.len(),
        })?;
        let line = self.take(len + 1)?;
        std::str::from_utf8(&line[..len]).map_err(|_| self.err("GLOBAL name is not UTF-8"))
    }

    fn alloc(&mut self, object: Object) -> Id {
        self.objects.push(object);
        self.objects.len() - 1
    }

    fn push(&mut self, object: Object) {
        let id = self.alloc(object);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<Id, TorchError> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<Id, TorchError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.marks.last().copied().unwrap_or(0) => Ok(id),
            _ => Err(self.err("stack underflow")),
        }
    }

    /// Everything pushed since the innermost MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Id>, TorchError> {
        let at = self.marks.pop().ok_or_else(|| self.err("no MARK on the stack"))?;
        Ok(self.stack.split_off(at))
    }

    fn string(&mut self, len: usize) -> Result<(), TorchError> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("string is not UTF-8"))?;
        self.push(Object::Str(s.to_string()));
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), TorchError> {
        let global = Global::lookup(module, name).ok_or_else(|| TorchError::ForbiddenGlobal {
            offset: self.op_at,
            name: format!("{module}.{name}"),
        })?;
        self.push(Object::Global(global));
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), TorchError> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), TorchError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.err(format!("memo {key} is empty")))?;
        self.stack.push(id);
        Ok(())
    }

    fn tuple(&mut self, n: usize) -> Result<(), TorchError> {
        let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        self.push(Object::Tuple(items));
        Ok(())
    }

    fn append(&mut self, items: Vec<Id>) -> Result<(), TorchError> {
        let list = self.top()?;
        match &mut self.objects[list] {
            Object::List(v) => {
                v.extend(items);
                Ok(())
            }
            other => {
                let kind = other.kind();
                Err(self.err(format!("APPEND to a {kind}")))
            }
        }
    }

    fn set_items(&mut self, items: Vec<Id>) -> Result<(), TorchError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let dict = self.top()?;
        match &mut self.objects[dict] {
            Object::Dict(pairs) => {
                pairs.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            other => {
                let kind = other.kind();
                Err(self.err(format!("SETITEM on a {kind}")))
            }
        }
    }

    fn run(&mut self) -> Result<Id, TorchError> {
        loop {
            self.op_at = self.pos;
            let [op] = self.arg::<1>()?;
            match op {
                0x80 => {
                    // PROTO: 2 is what torch.save writes; 3 and 4 add nothing we refuse.
                    let [v] = self.arg::<1>()?;
                    if !(2..=4).contains(&v) {
                        return Err(self.err(format!("pickle protocol {v}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint for buffered readers; the opcodes follow inline.
                    self.arg::<8>()?;
                }
                b'.' => {
                    // Stricter than Python, which ignores leftovers: a saved object is exactly
                    // one value with every MARK consumed.
                    if !self.marks.is_empty() || self.stack.len() != 1 {
                        return Err(self.err("STOP with an open MARK or leftover stack items"));
                    }
                    return self.pop();
                }
                b'}' => self.push(Object::Dict(Vec::new())),
                b']' => self.push(Object::List(Vec::new())),
                b')' => self.push(Object::Tuple(Vec::new())),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.push(Object::None),
                0x88 => self.push(Object::Bool(true)),
                0x89 => self.push(Object::Bool(false)),
                b'K' => {
                    let [v] = self.arg::<1>()?;
                    self.push(Object::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arg()?);
                    self.push(Object::Int(v.into()));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.arg()?);
                    self.push(Object::Int(v.into()));
                }
                0x8a => {
                    // LONG1: n bytes of two's complement, little-endian.
                    let [n] = self.arg::<1>()?;
                    let bytes = self.take(n.into())?;
                    if n > 16 {
                        return Err(self.err(format!("{n}-byte integer")));
                    }
                    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
                    let mut buf = [if negative { 0xff } else { 0 }; 16];
                    buf[..bytes.len()].copy_from_slice(bytes);
                    self.push(Object::Int(i128::from_le_bytes(buf)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.arg()?);
                    self.push(Object::Float(v));
                }
                b'X' => {
                    let len = u32::from_le_bytes(self.arg()?);
                    self.string(len as usize)?;
                }
                0x8c => {
                    let [len] = self.arg::<1>()?;
                    self.string(len.into())?;
                }
                b'q' => {
                    let [k] = self.arg::<1>()?;
                    self.memo_put(k.into())?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.arg()?);
                    self.memo_put(k.into())?;
                }
                0x94 => {
                    // MEMOIZE: the next free memo index.
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let [k] = self.arg::<1>()?;
                    self.memo_get(k.into())?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.arg()?);
                    self.memo_get(k.into())?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Object::Tuple(items));
                }
                0x85 => self.tuple(1)?,
                0x86 => self.tuple(2)?,
                0x87 => self.tuple(3)?,
                b'a' => {
                    let item = self.pop()?;
                    self.append(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    // STACK_GLOBAL: module and name as strings on the stack.
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.objects[module], &self.objects[name]) {
                        (Object::Str(m), Object::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.global(&m, &n)?;
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(Object::Storage(storage));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(callable, args)?;
                    self.stack.push(result);
                }
                b'b' => {
                    let state = self.pop()?;
                    self.build(state)?;
                }
                _ => return Err(self.err(format!("unsupported opcode {op:#04x}"))),
            }
        }
    }

    fn tuple_items(&self, id: Id, what: &str) -> Result<Vec<Id>, TorchError> {
        match &self.objects[id] {
            Object::Tuple(items) => Ok(items.clone()),
            other => Err(self.err(format!("{what}: expected a tuple, found a {}", other.kind()))),
        }
    }

    fn usize(&self, id: Id, what: &str) -> Result<usize, TorchError> {
        match &self.objects[id] {
            Object::Int(v) => usize::try_from(*v).map_err(|_| self.err(format!("{what}: {v} is out of range"))),
            other => Err(self.err(format!("{what}: expected an int, found a {}", other.kind()))),
        }
    }

    fn usizes(&self, id: Id, what: &str) -> Result<Vec<usize>, TorchError> {
        self.tuple_items(id, what)?
            .iter()
            .map(|&i| self.usize(i, what))
            .collect()
    }

    fn is_empty_dict(&self, id: Id) -> bool {
        matches!(&self.objects[id], Object::Dict(p) if p.is_empty())
    }

    /// torch's legacy `persistent_load`: `('storage', storage_type, key, location, size,
    /// view_metadata)`. Only float storages, and no views (which torch ≥ 0.4 never writes).
    fn persistent_load(&self, pid: Id) -> Result<StorageRef, TorchError> {
        let items = self.tuple_items(pid, "persistent id")?;
        let objects: Vec<&Object> = items.iter().map(|&i| &self.objects[i]).collect();
        match objects.as_slice() {
            [
                Object::Str(tag),
                Object::Global(Global::FloatStorage),
                Object::Str(key),
                Object::Str(_location),
                _,
                Object::None,
            ] if tag == "storage" => Ok(StorageRef {
                key: key.clone(),
                elements: self.usize(items[4], "storage size")?,
            }),
            _ => Err(self.err(format!(
                "unsupported persistent id ({})",
                objects.iter().map(|o| o.kind()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn reduce(&mut self, callable: Id, args: Id) -> Result<Id, TorchError> {
        let args = self.tuple_items(args, "REDUCE arguments")?;
        let global = match &self.objects[callable] {
            Object::Global(g) => *g,
            other => return Err(self.err(format!("REDUCE on a {}", other.kind()))),
        };
        match (global, args.as_slice()) {
            (Global::OrderedDict, []) => Ok(self.alloc(Object::Dict(Vec::new()))),
            (Global::RebuildTensorV2, &[storage, offset, size, stride, requires_grad, hooks]) => {
                let Object::Storage(storage) = &self.objects[storage] else {
                    return Err(self.err("_rebuild_tensor_v2 without a storage"));
                };
                let tensor = TensorRef {
                    storage: storage.clone(),
                    offset: self.usize(offset, "tensor offset")?,
                    shape: self.usizes(size, "tensor size")?,
                    stride: self.usizes(stride, "tensor stride")?,
                };
                if tensor.shape.len() != tensor.stride.len() {
                    return Err(self.err("tensor size and stride differ in length"));
                }
                if !matches!(self.objects[requires_grad], Object::Bool(_)) || !self.is_empty_dict(hooks) {
                    return Err(self.err("tensor with backward hooks"));
                }
                Ok(self.alloc(Object::Tensor(tensor)))
            }
            (Global::RebuildParameter, &[data, requires_grad, hooks]) => {
                if !matches!(self.objects[data], Object::Tensor(_))
                    || !matches!(self.objects[requires_grad], Object::Bool(_))
                    || !self.is_empty_dict(hooks)
                {
                    return Err(self.err("unsupported _rebuild_parameter arguments"));
                }
                Ok(data)
            }
            (global, args) => Err(self.err(format!("calling {global:?} with {} arguments", args.len()))),
        }
    }

    /// BUILD sets attributes. The one torch writes is the state dict's `_metadata` (module
    /// versions, not weights): accepted on a dict and dropped.
    fn build(&mut self, state: Id) -> Result<(), TorchError> {
        let target = self.top()?;
        match (&self.objects[target], &self.objects[state]) {
            (Object::Dict(_), Object::Dict(_)) => Ok(()),
            (t, s) => Err(self.err(format!("BUILD of a {} with a {}", t.kind(), s.kind()))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Opcode builders for hand-written pickles.
    pub fn unicode(s: &str) -> Vec<u8> {
        [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat()
    }

    pub fn int(v: u16) -> Vec<u8> {
        match u8::try_from(v) {
            Ok(b) => vec![b'K', b],
            Err(_) => [&[b'M'][..], &v.to_le_bytes()].concat(),
        }
    }

    fn run(bytes: &[u8]) -> Result<(Pickled, usize), TorchError> {
        load(bytes, 0)
    }

    #[test]
    fn builds_containers_with_memo_sharing() {
        // {'a': [1, -2, 2**70, 1.5, True, None], 'b': <same list>} — the list is memoised when
        // empty and filled afterwards: BINGET must see the filled list (Python semantics).
        let mut p = vec![0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'a', b']', b'q', 7, b'('];
        p.extend([b'K', 1, b'J']);
        p.extend((-2i32).to_le_bytes());
        p.extend([0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x40]);
        p.push(b'G');
        p.extend(1.5f64.to_be_bytes());
        p.extend([0x88, b'N', b'e']);
        p.extend(unicode("b"));
        p.extend([b'h', 7, b'u', b'.']);
        let (pickled, end) = run(&p).unwrap();
        assert_eq!(end, p.len());
        let Object::Dict(pairs) = pickled.root() else { panic!() };
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].1, pairs[1].1, "same object");
        let Object::List(items) = pickled.get(pairs[1].1) else {
            panic!()
        };
        let values: Vec<&Object> = items.iter().map(|&i| pickled.get(i)).collect();
        assert_eq!(
            values,
            [
                &Object::Int(1),
                &Object::Int(-2),
                &Object::Int(1 << 70),
                &Object::Float(1.5),
                &Object::Bool(true),
                &Object::None
            ]
        );
    }

    #[test]
    fn protocol_4_opcodes() {
        // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, REDUCE, TUPLE2/3, LONG_BINPUT/GET.
        let mut p = vec![0x80, 4, 0x95];
        p.extend(0u64.to_le_bytes());
        p.extend([0x8c, 11]);
        p.extend(b"collections");
        p.push(0x94);
        p.extend([0x8c, 11]);
        p.extend(b"OrderedDict");
        p.extend([0x94, 0x93, 0x94, b')', b'R', b'r']);
        p.extend(9u32.to_le_bytes());
        p.extend([b'K', 1, b'K', 2, 0x86, b'j']);
        p.extend(9u32.to_le_bytes());
        p.extend([0x87, b'.']);
        let (pickled, _) = run(&p).unwrap();
        let Object::Tuple(t) = pickled.root() else { panic!() };
        assert_eq!(t.len(), 3);
        assert_eq!(pickled.get(t[0]), &Object::Dict(vec![]));
        assert_eq!(t[0], t[2], "LONG_BINGET returns the memoised object itself");
        assert!(matches!(pickled.get(t[1]), Object::Tuple(v) if v.len() == 2));
    }

    #[test]
    fn refuses_globals_outside_the_allow_list() {
        for (module, name) in [
            ("os", "system"),
            ("builtins", "eval"),
            ("torch", "load"),
            ("collections", "Counter"),
        ] {
            let mut p = vec![0x80, 2, b'c'];
            p.extend(format!("{module}\n{name}\n").bytes());
            p.extend(unicode("echo pwned"));
            p.extend([0x85, b'R', b'.']);
            match run(&p) {
                Err(TorchError::ForbiddenGlobal { name: n, offset: 2 }) => assert_eq!(n, format!("{module}.{name}")),
                other => panic!("{module}.{name}: {other:?}"),
            }
            // The same through STACK_GLOBAL.
            let mut p = vec![0x80, 4];
            p.extend(unicode(module));
            p.extend(unicode(name));
            p.extend([0x93, b'.']);
            assert!(matches!(run(&p), Err(TorchError::ForbiddenGlobal { .. })));
        }
    }

    #[test]
    fn refuses_misuse_of_allowed_names() {
        // Calling FloatStorage, OrderedDict with arguments, REDUCE on a non-global.
        let cases: [&[u8]; 4] = [
            b"\x80\x02ctorch\nFloatStorage\n)R.",
            b"\x80\x02ccollections\nOrderedDict\nK\x01\x85R.",
            b"\x80\x02K\x01)R.",
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.",
        ];
        for p in cases {
            assert!(matches!(run(p), Err(TorchError::Pickle { .. })), "{p:?}");
        }
    }

    #[test]
    fn malformed_streams_are_typed_errors() {
        let cases: [&[u8]; 12] = [
            b"",
            b"\x80",
            b"\x80\x05.",            // protocol 5
            b"\x80\x02.",            // STOP on an empty stack
            b"\x80\x02K\x01(.",      // STOP only sees the stack above the MARK
            b"\x80\x02(K\x01.",      // a MARK left open
            b"\x80\x02K\x01K\x02.",  // two values left
            b"\x80\x02K\x01\x86.",   // TUPLE2 with one item
            b"\x80\x02h\x03.",       // empty memo slot
            b"\x80\x02K\x01K\x02a.", // APPEND to an int
            b"\x80\x02}(K\x01u.",    // odd SETITEMS
            b"\x80\x02S'os'\np0\n.", // text-protocol STRING opcode: not supported
        ];
        for p in cases {
            assert!(
                matches!(run(p), Err(TorchError::Pickle { .. } | TorchError::Truncated { .. })),
                "{p:?}: {:?}",
                run(p)
            );
        }
        assert!(matches!(
            run(b"\x80\x02X\xff\xff\xff\xff"),
            Err(TorchError::Truncated { .. })
        ));
        assert!(matches!(run(b"\x80\x02cos\nsys"), Err(TorchError::Truncated { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random sequence of opcode-heavy bytes.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let ops = b"}])(NK\x88\x89qhtXu.seaRbQ\x85\x86\x87\x8a\x8cJMG\x94\x93\x95rj";
        for _ in 0..2000 {
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if state.is_multiple_of(3) {
                        (state >> 8) as u8
                    } else {
                        ops[(state >> 8) as usize % ops.len()]
                    }
                })
                .collect();
            let _ = run(&bytes);
        }
    }
}
