//! Glob patterns as KEYS and SCAN's MATCH take them: `*`, `?`, `[abc]`, `[^a-z]` and `\`
//! escapes, over bytes (keys are binary), with Redis' readings of the odd cases (an
//! unterminated class ends with the pattern, a lone trailing `\` is itself, `[]` is empty).
//!
//! Not a crate's glob: those are for paths (separators, no binary keys), and Redis' odd
//! cases are part of what clients see. The match is linear in time per star (the classic
//! backtrack-to-last-star walk), so no pattern takes exponential time.

/// One element of a pattern; each but `Star` matches exactly one byte.
#[derive(Debug, PartialEq, Eq)]
enum Atom {
    Star,
    Any,
    Byte(u8),
    Class {
        negated: bool,
        /// Inclusive byte ranges (a single byte is a range of one).
        ranges: Vec<(u8, u8)>,
    },
}

/// A compiled pattern.
#[derive(Debug)]
pub struct Pattern {
    atoms: Vec<Atom>,
}

impl Pattern {
    /// Compiles `pattern`.
    #[must_use]
    pub fn new(pattern: &[u8]) -> Self {
        let mut atoms = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let atom = match pattern[i] {
                b'*' => {
                    if atoms.last() != Some(&Atom::Star) {
                        atoms.push(Atom::Star);
                    }
                    i += 1;
                    continue;
                }
                b'?' => Atom::Any,
                b'\\' if i + 1 < pattern.len() => {
                    i += 1;
                    Atom::Byte(pattern[i])
                }
                b'[' => {
                    i += 1;
                    let negated = pattern.get(i) == Some(&b'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    // Up to `]`, or the end of the pattern.
                    while let Some(&c) = pattern.get(i) {
                        match c {
                            b']' => break,
                            b'\\' if i + 1 < pattern.len() => {
                                i += 1;
                                ranges.push((pattern[i], pattern[i]));
                            }
                            _ if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                                let (a, b) = (c, pattern[i + 2]);
                                ranges.push((a.min(b), a.max(b)));
                                i += 2;
                            }
                            _ => ranges.push((c, c)),
                        }
                        i += 1;
                    }
                    Atom::Class { negated, ranges }
                }
                c => Atom::Byte(c),
            };
            atoms.push(atom);
            i += 1;
        }
        Self { atoms }
    }

    /// Whether the pattern is `*` (matches everything: no need to look).
    #[must_use]
    pub fn matches_all(&self) -> bool {
        self.atoms == [Atom::Star]
    }

    /// Whether `text` matches the whole pattern.
    #[must_use]
    pub fn matches(&self, text: &[u8]) -> bool {
        let one = |atom: &Atom, c: u8| match atom {
            Atom::Star => unreachable!("stars are handled by the walk"),
            Atom::Any => true,
            Atom::Byte(b) => *b == c,
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
            }
        };
        let (mut p, mut t) = (0, 0);
        // The last star seen, and the text position it has swallowed up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.atoms.get(p) {
                Some(Atom::Star) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(atom) if one(atom, text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    // The star takes one more byte; the rest is tried again after it.
                    Some((sp, st)) => {
                        star = Some((sp, st + 1));
                        p = sp + 1;
                        t = st + 1;
                    }
                    None => return false,
                },
            }
        }
        self.atoms[p..].iter().all(|a| *a == Atom::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_redis_reads_them() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h*llo", "hellox", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("[]", "", false),
            ("[]a", "a", false),
            ("ab\\", "ab\\", true),
            ("[abc", "b", true),
            ("[abc", "bc", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            (
                "*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:names", false),
            ("**x", "abx", true),
            ("?", "", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Pattern::new(pattern.as_bytes()).matches(text.as_bytes()),
                *want,
                "{pattern:?} against {text:?}"
            );
        }
        assert!(Pattern::new(b"**").matches_all());
        assert!(!Pattern::new(b"a*").matches_all());
    }
}
