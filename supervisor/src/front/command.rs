//! What a command is: one [`Spec`] per command, declared once in the command table
//! (`front::table::TABLE`). Dispatch, arity errors, `COMMAND COUNT` and
//! `COMMAND GETKEYS`, the metric labels and README's command table all come from it.
//!
//! Generic over the handler type, so this module knows nothing of sessions and the table
//! can live with the handlers it names.

/// How many arguments a command takes, counting its name, as Redis writes it: `n` exactly
/// `n`, `-n` at least `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity(pub i32);

impl Arity {
    /// Whether `args` arguments (with the name) are allowed.
    #[must_use]
    pub fn allows(self, args: usize) -> bool {
        let n = self.0.unsigned_abs() as usize;
        if self.0 >= 0 {
            args == n
        } else {
            args >= n
        }
    }
}

/// Where a command's keys are among its arguments, as Redis' `COMMAND` reports them
/// (`first`, `last`, `step`; the name is argument 0, a negative `last` counts from the end,
/// `first == 0` means no keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Index of the first key.
    pub first: usize,
    /// Index of the last key (`-1`: the last argument).
    pub last: isize,
    /// Distance between keys.
    pub step: usize,
}

impl Keys {
    /// No keys.
    pub const NONE: Self = Self {
        first: 0,
        last: 0,
        step: 0,
    };
    /// The first argument is the key.
    pub const ONE: Self = Self {
        first: 1,
        last: 1,
        step: 1,
    };
    /// Every argument is a key.
    pub const ALL: Self = Self {
        first: 1,
        last: -1,
        step: 1,
    };
    /// The first two arguments are keys (a source and a destination).
    pub const TWO: Self = Self {
        first: 1,
        last: 2,
        step: 1,
    };
    /// Key, value, key, value, ...
    pub const PAIRS: Self = Self {
        first: 1,
        last: -1,
        step: 2,
    };

    /// The key positions in a command of `args` arguments (with the name).
    pub fn positions(self, args: usize) -> impl Iterator<Item = usize> {
        let last = if self.last < 0 {
            args.checked_sub(self.last.unsigned_abs())
        } else {
            Some(self.last.unsigned_abs())
        };
        let range = match (self.first, last) {
            (0, _) | (_, None) => 0..0,
            (first, Some(last)) => first..(last + 1).min(args),
        };
        range.step_by(self.step.max(1))
    }
}

/// What kind of command it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Changes the state: queued behind the connection's earlier writes, logged, applied.
    Write,
    /// Reads or answers at once: the connection's earlier writes are acknowledged first, so
    /// it sees them.
    Read,
}

/// The group a command belongs to, as Redis' documentation and ACL categories name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Values of string keys.
    String,
    /// Bits of string values.
    Bitmap,
    /// Keys of any type.
    Generic,
    /// The connection itself.
    Connection,
    /// The server: introspection and settings.
    Server,
    /// Transactions: MULTI, EXEC, DISCARD.
    Transaction,
}

impl Group {
    /// The name COMMAND DOCS and the ACL categories use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Bitmap => "bitmap",
            Self::Generic => "generic",
            Self::Transaction => "transactions",
            Self::Connection => "connection",
            Self::Server => "server",
        }
    }
}

/// The key flags of one call, from its arguments (the name first).
pub type KeyFlagsOf = fn(&[&[u8]]) -> &'static [&'static str];

/// One command.
#[derive(Debug)]
pub struct Spec<H: 'static> {
    /// Lower-case name: what clients send (in any case) and the metric label.
    pub name: &'static str,
    /// Argument count, with the name.
    pub arity: Arity,
    /// Write or read.
    pub kind: Kind,
    /// Allowed before AUTH when a password is set.
    pub before_auth: bool,
    /// Key positions.
    pub keys: Keys,
    /// Its group.
    pub group: Group,
    /// What it does, in one line (COMMAND DOCS).
    pub summary: &'static str,
    /// Redis' command flags (`write`, `readonly`, `fast`, `no_auth`, ...).
    pub flags: &'static [&'static str],
    /// Its ACL categories (`@read`, `@string`, ...).
    pub acl: &'static [&'static str],
    /// The flags of its key specification (`RO`, `access`, ...; empty without keys).
    pub key_flags: &'static [&'static str],
    /// With `variable_flags` among them: the flags one call uses its keys with, from its
    /// arguments (SET reads its key only with GET), as Redis' per-command key procedure
    /// decides them for COMMAND GETKEYSANDFLAGS.
    pub call_key_flags: Option<KeyFlagsOf>,
    /// A command of a source and a destination key (RENAME, COPY): the destination's
    /// flags. Its keys then have a key specification each, the source's `key_flags`.
    pub destination_flags: &'static [&'static str],
    /// Its command tips (`request_policy:multi_shard`, ...).
    pub tips: &'static [&'static str],
    /// A container's subcommands (`client|list`, ...): each a command of its own, run in
    /// place of the container when its name is the first argument. The container's own
    /// handler answers the rest (HELP, or Redis' unknown-subcommand error).
    pub subcommands: &'static [Spec<H>],
    /// Runs it.
    pub run: H,
}

impl<H> Spec<H> {
    /// A command with no Redis metadata yet (see [`Spec::meta`]), allowed only after AUTH
    /// and without subcommands.
    #[must_use]
    pub const fn new(
        name: &'static str,
        arity: i32,
        kind: Kind,
        keys: Keys,
        group: Group,
        summary: &'static str,
        run: H,
    ) -> Self {
        Self {
            name,
            arity: Arity(arity),
            kind,
            before_auth: false,
            keys,
            group,
            summary,
            flags: &[],
            acl: &[],
            key_flags: &[],
            call_key_flags: None,
            destination_flags: &[],
            tips: &[],
            subcommands: &[],
            run,
        }
    }

    /// Its Redis metadata, as COMMAND INFO reports it: command `flags`, ACL categories
    /// (`acl`), the flags of its key specification (`key_flags`) and `tips`.
    #[must_use]
    pub const fn meta(
        mut self,
        flags: &'static [&'static str],
        acl: &'static [&'static str],
        key_flags: &'static [&'static str],
        tips: &'static [&'static str],
    ) -> Self {
        self.flags = flags;
        self.acl = acl;
        self.key_flags = key_flags;
        self.tips = tips;
        self
    }

    /// Its key flags depend on the arguments: `flags` gives them for one call.
    #[must_use]
    pub const fn call_key_flags(mut self, flags: fn(&[&[u8]]) -> &'static [&'static str]) -> Self {
        self.call_key_flags = Some(flags);
        self
    }

    /// Its second key is a destination, used with `flags`.
    #[must_use]
    pub const fn destination(mut self, flags: &'static [&'static str]) -> Self {
        self.destination_flags = flags;
        self
    }

    /// The flags the call `args` (the name first) uses its keys with.
    #[must_use]
    pub fn key_flags_of(&self, args: &[&[u8]]) -> &'static [&'static str] {
        self.call_key_flags
            .map_or(self.key_flags, |flags| flags(args))
    }

    /// A container with these subcommands.
    #[must_use]
    pub const fn with_subcommands(mut self, subcommands: &'static [Spec<H>]) -> Self {
        self.subcommands = subcommands;
        self
    }
}

/// The command table: every command Corral runs, in metric-label order.
///
/// Each command and each subcommand has a metric index, as Redis counts `client|list`
/// apart from `client|id`: the commands first, in order, then the subcommands of each
/// container in turn, then [`Table::other`].
#[derive(Debug)]
pub struct Table<H: 'static> {
    specs: &'static [Spec<H>],
    /// The names as [`name_key`]s, sorted, with their indexes: a lookup per command is a
    /// binary search over integers (a name fits in 16 bytes), not a scan of every name nor
    /// a byte comparison per probe.
    by_name: Box<[(u128, usize)]>,
    /// Per command, the metric index of its first subcommand.
    first_sub: Box<[usize]>,
    /// The metric labels: commands, then subcommands.
    labels: Box<[&'static str]>,
}

/// The metric label of commands that are not in the table.
pub const OTHER_LABEL: &str = "other";

impl<H> Table<H> {
    /// A table of `specs`.
    ///
    /// # Panics
    /// If two specs share a name, or a name is not lower case or longer than
    /// [`NAME_MAX_BYTES`]: the table is static, so this fails the first test that builds it.
    #[must_use]
    pub fn new(specs: &'static [Spec<H>]) -> Self {
        for (i, s) in specs.iter().enumerate() {
            assert!(
                s.name.len() <= NAME_MAX_BYTES && s.name.bytes().all(|b| b.is_ascii_lowercase()),
                "command name {:?} must be lower case, at most {NAME_MAX_BYTES} bytes",
                s.name
            );
            assert!(
                specs[..i].iter().all(|t| t.name != s.name),
                "command {:?} is declared twice",
                s.name
            );
            for (j, sub) in s.subcommands.iter().enumerate() {
                let valid = sub.name.split_once('|').is_some_and(|(container, name)| {
                    container == s.name
                        && !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                });
                assert!(
                    valid,
                    "subcommand {:?} of {:?} must be `{0}|name`",
                    sub.name, s.name
                );
                assert!(
                    s.subcommands[..j].iter().all(|t| t.name != sub.name),
                    "subcommand {:?} is declared twice",
                    sub.name
                );
                assert!(sub.subcommands.is_empty(), "{} nests subcommands", sub.name);
            }
        }
        let mut by_name: Vec<(u128, usize)> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (name_key(s.name.as_bytes()), i))
            .collect();
        by_name.sort_unstable();
        let mut labels: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
        let mut first_sub = Vec::with_capacity(specs.len());
        for s in specs {
            first_sub.push(labels.len());
            labels.extend(s.subcommands.iter().map(|sub| sub.name));
        }
        Self {
            specs,
            by_name: by_name.into_boxed_slice(),
            first_sub: first_sub.into_boxed_slice(),
            labels: labels.into_boxed_slice(),
        }
    }

    /// The command named `name` (any case) and its index, the metric index.
    #[must_use]
    pub fn find(&self, name: &[u8]) -> Option<(usize, &'static Spec<H>)> {
        if name.len() > NAME_MAX_BYTES {
            return None;
        }
        let key = name_key(name);
        let at = self.by_name.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        let i = self.by_name[at].1;
        // Zeros pad a key: `get\0` has GET's key but is not GET.
        if self.specs[i].name.len() != name.len() {
            return None;
        }
        Some((i, &self.specs[i]))
    }

    /// The subcommand of command `index` that `args[1]` names (any case), with its metric
    /// index.
    #[must_use]
    pub fn subcommand(&self, index: usize, args: &[&[u8]]) -> Option<(usize, &'static Spec<H>)> {
        let subs = self.specs.get(index)?.subcommands;
        let sub = args.get(1)?;
        let j = subs.iter().position(|s| {
            s.name
                .split_once('|')
                .is_some_and(|(_, name)| name.as_bytes().eq_ignore_ascii_case(sub))
        })?;
        Some((self.first_sub[index] + j, &subs[j]))
    }

    /// Every command, in order.
    #[must_use]
    pub fn specs(&self) -> &'static [Spec<H>] {
        self.specs
    }

    /// The metric index of commands not in the table.
    #[must_use]
    pub fn other(&self) -> usize {
        self.labels.len()
    }

    /// The metric label of index `i`: the (sub)command's name, or [`OTHER_LABEL`].
    #[must_use]
    pub fn label(&self, i: usize) -> &'static str {
        self.labels.get(i).copied().unwrap_or(OTHER_LABEL)
    }

    /// Every metric label: the commands, the subcommands, then [`OTHER_LABEL`].
    #[must_use]
    pub fn labels(&self) -> Vec<&'static str> {
        (0..=self.labels.len()).map(|i| self.label(i)).collect()
    }
}

/// The longest command name.
pub const NAME_MAX_BYTES: usize = 16;

/// A name of at most [`NAME_MAX_BYTES`] bytes as one integer, lower-cased: its bytes, then
/// zeros. Two names of the same length have the same key exactly when they are equal in
/// any case.
fn name_key(name: &[u8]) -> u128 {
    let mut bytes = [0u8; NAME_MAX_BYTES];
    bytes[..name.len()].copy_from_slice(name);
    bytes.make_ascii_lowercase();
    u128::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_as_redis_writes_it() {
        for (arity, args, allowed) in [
            (2, 2, true),
            (2, 1, false),
            (2, 3, false),
            (-2, 1, false),
            (-2, 2, true),
            (-2, 9, true),
            (-1, 1, true),
        ] {
            assert_eq!(Arity(arity).allows(args), allowed, "{arity} {args}");
        }
    }

    #[test]
    fn key_positions() {
        let keys = |k: Keys, n: usize| k.positions(n).collect::<Vec<_>>();
        assert_eq!(keys(Keys::NONE, 3), Vec::<usize>::new());
        assert_eq!(keys(Keys::ONE, 3), vec![1]);
        assert_eq!(keys(Keys::ALL, 4), vec![1, 2, 3]);
        assert_eq!(keys(Keys::PAIRS, 5), vec![1, 3]);
        assert_eq!(keys(Keys::ONE, 1), Vec::<usize>::new());
        assert_eq!(keys(Keys::ALL, 1), Vec::<usize>::new());
    }

    /// A one-key string command for the tests.
    const fn test_spec(name: &'static str, arity: i32, kind: Kind, run: u8) -> Spec<u8> {
        Spec::new(name, arity, kind, Keys::ONE, Group::String, "", run)
    }

    static SPECS: [Spec<u8>; 2] = [
        test_spec("get", 2, Kind::Read, 0),
        test_spec("set", -3, Kind::Write, 1),
    ];

    #[test]
    fn lookup_ignores_case_and_labels_the_rest_other() {
        let table = Table::new(&SPECS);
        assert_eq!(table.find(b"SeT").map(|(i, s)| (i, s.run)), Some((1, 1)));
        assert!(table.find(b"flushall").is_none());
        assert!(table.find(&[b'g'; 100]).is_none());
        assert!(table.find(b"get\0").is_none());
        assert!(table.find(b"ge").is_none());
        assert_eq!(table.find(b"GET").map(|(i, _)| i), Some(0));
        assert_eq!(table.labels(), vec!["get", "set", "other"]);
        assert_eq!(table.label(table.other()), "other");
    }

    #[test]
    fn subcommands_have_metric_indexes_after_the_commands() {
        static SUBS: [Spec<u8>; 2] = [
            test_spec("client|id", 2, Kind::Read, 2),
            test_spec("client|list", -2, Kind::Read, 3),
        ];
        static WITH_SUBS: [Spec<u8>; 3] = [
            test_spec("get", 2, Kind::Read, 0),
            test_spec("client", -2, Kind::Read, 1).with_subcommands(&SUBS),
            test_spec("set", -3, Kind::Write, 1),
        ];
        let table = Table::new(&WITH_SUBS);
        let (client, _) = table.find(b"client").unwrap();
        let (i, sub) = table.subcommand(client, &[b"client", b"LIST"]).unwrap();
        assert_eq!(
            (i, sub.name, table.label(i)),
            (4, "client|list", "client|list")
        );
        assert!(table.subcommand(client, &[b"client", b"nosuch"]).is_none());
        assert!(table.subcommand(client, &[b"client"]).is_none());
        assert!(table.subcommand(0, &[b"get", b"id"]).is_none());
        assert_eq!(
            table.labels(),
            ["get", "client", "set", "client|id", "client|list", "other"]
        );
        assert_eq!(table.other(), 5);
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_name_declared_twice_is_refused() {
        static TWICE: [Spec<u8>; 2] = [
            test_spec("get", 2, Kind::Read, 0),
            test_spec("get", 2, Kind::Read, 1),
        ];
        let _ = Table::new(&TWICE);
    }
}
