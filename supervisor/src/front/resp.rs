//! RESP2: an incremental request parser with limits, and reply encoding.
//!
//! The parser is resumable: a command that arrives in pieces is parsed once, not again from
//! its start whenever bytes arrive (a client dribbling a huge command costs its bytes, not
//! their square). A bulk over the size limit does not close the connection: its bytes are
//! read past without being kept, and the command is answered with an error.

/// Parser limits; exceeding one is a protocol error for that client only.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest bulk string a command may carry (longer ones are skipped and refused).
    pub max_bulk_bytes: usize,
    /// Longest inline command line.
    pub max_inline_bytes: usize,
    /// Whether the client has authenticated: before, Redis' tighter limits apply (at most
    /// [`UNAUTH_MAX_ARGS`] arguments of [`UNAUTH_MAX_BULK`] bytes), as protocol errors.
    pub authenticated: bool,
}

/// Most arguments of a command before AUTH (as Redis).
pub const UNAUTH_MAX_ARGS: usize = 10;
/// Longest bulk before AUTH (as Redis).
pub const UNAUTH_MAX_BULK: usize = 16 << 10;
/// Longest bulk the protocol accepts at all (Redis' `proto-max-bulk-len`): longer is a
/// protocol error; between the limit and this, the bulk is skipped and refused.
pub const PROTO_MAX_BULK: u64 = 512 << 20;
/// Longest `*<count>` or `$<len>` line.
const LENGTH_LINE_MAX: usize = 32;

/// A request that breaks the protocol. The connection answers with `-ERR Protocol error:`
/// and closes, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Why a complete command is refused without running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// One of its arguments is longer than [`ParseLimits::max_bulk_bytes`].
    TooLarge {
        /// The longest one seen.
        bytes: u64,
    },
}

/// What [`parse`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command: its arguments are in the frame, and the next one starts at this offset.
    Command(usize),
    /// A command that must not run (its bytes are consumed): the next one starts here.
    Rejected(usize, Rejection),
    /// The command is not complete; bytes before this offset are no longer needed (the
    /// caller may drop them and pass the new start next time).
    Incomplete(usize),
}

/// The state of the command being parsed, across calls: every position is relative to the
/// command's start (the `start` of the call), so the caller may move its buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Partial {
    /// At the start of a command.
    #[default]
    Idle,
    /// An inline command whose line end was not found in the first `scanned` bytes.
    Inline { scanned: usize },
    /// A multibulk command of `count` arguments, the next header at `at`.
    Multibulk { count: usize, at: usize },
    /// Reading past a refused command: `args_left` arguments still to come, `bulk_left`
    /// bytes of the current bulk (with its CRLF), then the next header at `at`.
    Discard {
        args_left: usize,
        bulk_left: u64,
        at: usize,
        rejection: Rejection,
    },
}

/// One parsed command: its arguments as byte ranges of the input buffer; also the state of
/// a command still arriving.
#[derive(Debug, Default)]
pub struct Frame {
    /// `(start, end)` of each argument in the buffer the frame was parsed from, or, for an
    /// inline command, in [`Frame::inline`].
    pub args: Vec<(usize, usize)>,
    /// The unquoted, unescaped arguments of an inline command (`None` for a multibulk one,
    /// whose arguments are read in place).
    pub inline: Option<Vec<u8>>,
    /// Arguments of the incomplete command, relative to its start.
    partial_args: Vec<(usize, usize)>,
    partial: Partial,
}

impl Frame {
    /// The bytes the argument ranges index: the input buffer, or the inline arguments.
    #[must_use]
    pub fn source<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        self.inline.as_deref().unwrap_or(buf)
    }
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    let slice = buf.get(from..)?;
    slice.iter().position(|&b| b == b'\n').map(|p| from + p)
}

fn parse_len(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let (neg, digits) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// A `<marker><number>\r\n` line at `at` of `buf`: the number and the offset after the
/// line, `Ok(None)` if the line is not complete yet.
fn length_line(buf: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, ProtocolError> {
    let window = &buf[at..buf.len().min(at + LENGTH_LINE_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == LENGTH_LINE_MAX {
            return Err(ProtocolError(format!("invalid {what}")));
        }
        return Ok(None);
    };
    if lf < 2 || window[lf - 1] != b'\r' {
        return Err(ProtocolError(format!("invalid {what}")));
    }
    let n =
        parse_len(&window[1..lf - 1]).ok_or_else(|| ProtocolError(format!("invalid {what}")))?;
    Ok(Some((n, at + lf + 1)))
}

/// Parses the command starting at `start` of `buf` (resuming where the last call on the
/// same frame stopped, if that command was incomplete).
pub fn parse(
    buf: &[u8],
    start: usize,
    limits: &ParseLimits,
    frame: &mut Frame,
) -> Result<Parsed, ProtocolError> {
    frame.args.clear();
    let result = parse_from(buf, start, limits, frame);
    if result.is_err() {
        frame.partial = Partial::Idle;
        frame.partial_args.clear();
    }
    result
}

/// One step of the parser: the command's outcome, or `None` when the frame moved to
/// another state to go on in.
type Step = Result<Option<Parsed>, ProtocolError>;

fn parse_from(
    buf: &[u8],
    start: usize,
    limits: &ParseLimits,
    frame: &mut Frame,
) -> Result<Parsed, ProtocolError> {
    let rel = &buf[start.min(buf.len())..];
    loop {
        let step = match frame.partial.clone() {
            Partial::Idle => idle(rel, start, limits, frame),
            Partial::Inline { scanned } => inline(rel, start, scanned, limits, frame),
            Partial::Multibulk { count, at } => multibulk(rel, start, count, at, limits, frame),
            Partial::Discard {
                args_left,
                bulk_left,
                at,
                rejection,
            } => discard(rel, start, args_left, bulk_left, at, rejection, frame),
        };
        if let Some(parsed) = step? {
            return Ok(parsed);
        }
    }
}

/// A new command: a multibulk (`*<count>`) or an inline one.
fn idle(rel: &[u8], start: usize, limits: &ParseLimits, frame: &mut Frame) -> Step {
    let Some(&first) = rel.first() else {
        return Ok(Some(Parsed::Incomplete(start)));
    };
    if first != b'*' {
        frame.partial = Partial::Inline { scanned: 0 };
        return Ok(None);
    }
    let Some((count, after)) = length_line(rel, 0, "multibulk length")? else {
        return Ok(Some(Parsed::Incomplete(start)));
    };
    if !limits.authenticated && count > UNAUTH_MAX_ARGS as i64 {
        return Err(ProtocolError("unauthenticated multibulk length".into()));
    }
    if count > limits.max_args as i64 {
        return Err(ProtocolError("invalid multibulk length".into()));
    }
    if count <= 0 {
        return Ok(Some(Parsed::Command(start + after)));
    }
    frame.partial_args.clear();
    frame.partial = Partial::Multibulk {
        count: count as usize,
        at: after,
    };
    Ok(None)
}

/// An inline command: words up to the end of the line (`scanned` bytes were searched
/// already).
fn inline(
    rel: &[u8],
    start: usize,
    scanned: usize,
    limits: &ParseLimits,
    frame: &mut Frame,
) -> Step {
    let Some(lf) = find_lf(rel, scanned) else {
        if rel.len() > limits.max_inline_bytes {
            return Err(ProtocolError("too big inline request".into()));
        }
        frame.partial = Partial::Inline { scanned: rel.len() };
        return Ok(Some(Parsed::Incomplete(start)));
    };
    if lf > limits.max_inline_bytes {
        return Err(ProtocolError("too big inline request".into()));
    }
    let line_end = if lf > 0 && rel[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    let mut owned = frame.inline.take().unwrap_or_default();
    owned.clear();
    split_args(
        &rel[..line_end],
        &mut owned,
        &mut frame.args,
        limits.max_args,
    )?;
    frame.inline = Some(owned);
    frame.partial = Partial::Idle;
    Ok(Some(Parsed::Command(start + lf + 1)))
}

/// Splits an inline command line into arguments as Redis does (`sdssplitargs`): blanks
/// separate them; `"..."` takes the escapes `\n \r \t \b \a \xHH` (any other escaped
/// character stands for itself), `'...'` only `\'`; a closing quote must end the argument.
/// The arguments go into `owned`, their ranges into `args`.
fn split_args(
    line: &[u8],
    owned: &mut Vec<u8>,
    args: &mut Vec<(usize, usize)>,
    max_args: usize,
) -> Result<(), ProtocolError> {
    let unbalanced = || ProtocolError("unbalanced quotes in request".into());
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        if args.len() == max_args {
            return Err(ProtocolError("invalid multibulk length".into()));
        }
        let begin = owned.len();
        let (mut double, mut single) = (false, false);
        loop {
            let Some(&c) = line.get(i) else {
                if double || single {
                    return Err(unbalanced());
                }
                break;
            };
            if double {
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    let hex = std::str::from_utf8(&line[i + 2..i + 4]).unwrap_or("0");
                    owned.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 4;
                    continue;
                }
                if c == b'\\' && i + 1 < line.len() {
                    owned.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    // The closing quote must end the argument.
                    if line.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                owned.push(c);
            } else if single {
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    owned.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if line.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                owned.push(c);
            } else if c.is_ascii_whitespace() {
                break;
            } else if c == b'"' {
                double = true;
            } else if c == b'\'' {
                single = true;
            } else {
                owned.push(c);
            }
            i += 1;
        }
        args.push((begin, owned.len()));
    }
}

/// The `$<len>\r\n` header of a bulk string at `at`: its length and where its data
/// starts, `None` while incomplete.
fn bulk_header(rel: &[u8], at: usize) -> Result<Option<(u64, usize)>, ProtocolError> {
    let Some(&marker) = rel.get(at) else {
        return Ok(None);
    };
    if marker != b'$' {
        return Err(ProtocolError(format!(
            "expected '$', got '{}'",
            char::from(marker).escape_default()
        )));
    }
    let Some((len, data)) = length_line(rel, at, "bulk length")? else {
        return Ok(None);
    };
    if len < 0 || len as u64 > PROTO_MAX_BULK {
        return Err(ProtocolError("invalid bulk length".into()));
    }
    Ok(Some((len as u64, data)))
}

/// The bulk strings of a multibulk command of `count` arguments, from `at`; a bulk over
/// the limit turns the rest of the command into a [`Partial::Discard`].
fn multibulk(
    rel: &[u8],
    start: usize,
    count: usize,
    mut at: usize,
    limits: &ParseLimits,
    frame: &mut Frame,
) -> Step {
    while frame.partial_args.len() < count {
        let Some((len, data)) = bulk_header(rel, at)? else {
            frame.partial = Partial::Multibulk { count, at };
            return Ok(Some(Parsed::Incomplete(start)));
        };
        if !limits.authenticated && len > UNAUTH_MAX_BULK as u64 {
            return Err(ProtocolError("unauthenticated bulk length".into()));
        }
        if len > limits.max_bulk_bytes as u64 {
            // Refused: read past it (and the rest of the command) unkept.
            let args_left = count - frame.partial_args.len() - 1;
            frame.partial_args.clear();
            frame.partial = Partial::Discard {
                args_left,
                bulk_left: len + 2,
                at: data,
                rejection: Rejection::TooLarge { bytes: len },
            };
            return Ok(None);
        }
        let end = data + len as usize;
        if rel.len() < end + 2 {
            frame.partial = Partial::Multibulk { count, at };
            return Ok(Some(Parsed::Incomplete(start)));
        }
        if &rel[end..end + 2] != b"\r\n" {
            return Err(ProtocolError(
                "bulk string is not terminated by CRLF".into(),
            ));
        }
        frame.partial_args.push((data, end));
        at = end + 2;
    }
    frame.partial = Partial::Idle;
    frame.inline = None;
    frame.args.extend(
        frame
            .partial_args
            .drain(..)
            .map(|(s, e)| (start + s, start + e)),
    );
    Ok(Some(Parsed::Command(start + at)))
}

/// Reads past the rest of a refused command: `bulk_left` bytes of the current bulk, then
/// `args_left` more bulks, as they arrive (what is read past may be dropped by the caller).
fn discard(
    rel: &[u8],
    start: usize,
    mut args_left: usize,
    mut bulk_left: u64,
    mut at: usize,
    mut rejection: Rejection,
    frame: &mut Frame,
) -> Step {
    loop {
        if bulk_left > 0 {
            let have = (rel.len() - at.min(rel.len())) as u64;
            let take = have.min(bulk_left);
            bulk_left -= take;
            at += take as usize;
        }
        if bulk_left == 0 && args_left == 0 {
            frame.partial = Partial::Idle;
            return Ok(Some(Parsed::Rejected(start + at, rejection)));
        }
        let header = if bulk_left > 0 {
            None
        } else {
            bulk_header(rel, at)?
        };
        let Some((len, data)) = header else {
            // Everything so far is read past.
            frame.partial = Partial::Discard {
                args_left,
                bulk_left,
                at: 0,
                rejection,
            };
            return Ok(Some(Parsed::Incomplete(start + at)));
        };
        let Rejection::TooLarge { bytes } = rejection;
        rejection = Rejection::TooLarge {
            bytes: bytes.max(len),
        };
        args_left -= 1;
        bulk_left = len + 2;
        at = data;
    }
}

/// Reply encoding into a growing output buffer.
pub mod reply {
    use super::Proto;

    /// `+text`.
    pub fn simple(out: &mut Vec<u8>, text: &str) {
        out.push(b'+');
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `-text` (text starts with the error code, e.g. `ERR ...`). CR and LF in it are
    /// replaced so a reply can never break framing.
    pub fn error(out: &mut Vec<u8>, text: &str) {
        out.push(b'-');
        out.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }

    /// `:n`.
    pub fn int(out: &mut Vec<u8>, n: i64) {
        out.push(b':');
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `$len\r\nbytes`.
    pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
        out.push(b'$');
        out.extend_from_slice(bytes.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(out: &mut Vec<u8>, proto: Proto) {
        out.extend_from_slice(match proto {
            Proto::Resp2 => b"$-1\r\n",
            Proto::Resp3 => b"_\r\n",
        });
    }

    /// A missing array (an aborted EXEC): `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(out: &mut Vec<u8>, proto: Proto) {
        out.extend_from_slice(match proto {
            Proto::Resp2 => b"*-1\r\n",
            Proto::Resp3 => b"_\r\n",
        });
    }

    fn header(out: &mut Vec<u8>, marker: u8, n: usize) {
        out.push(marker);
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `*n`, followed by `n` replies written by the caller.
    pub fn array(out: &mut Vec<u8>, n: usize) {
        header(out, b'*', n);
    }

    /// A map of `n` pairs, followed by `2n` replies (key, value, ...) written by the
    /// caller: `%n` in RESP3, a flat array of `2n` in RESP2.
    pub fn map(out: &mut Vec<u8>, proto: Proto, n: usize) {
        match proto {
            Proto::Resp2 => header(out, b'*', 2 * n),
            Proto::Resp3 => header(out, b'%', n),
        }
    }

    /// A set of `n` members written by the caller: `~n` in RESP3, an array in RESP2.
    pub fn set(out: &mut Vec<u8>, proto: Proto, n: usize) {
        header(out, if proto == Proto::Resp3 { b'~' } else { b'*' }, n);
    }

    /// Text meant for people (INFO, CLIENT INFO, CLIENT LIST): a verbatim string of format
    /// `txt` in RESP3, a bulk string in RESP2.
    pub fn verbatim(out: &mut Vec<u8>, proto: Proto, text: &[u8]) {
        match proto {
            Proto::Resp2 => bulk(out, text),
            Proto::Resp3 => {
                header(out, b'=', text.len() + 4);
                out.extend_from_slice(b"txt:");
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// A connection's protocol, chosen with HELLO (RESP2 until then).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// RESP2: nulls are `$-1`, maps flat arrays.
    #[default]
    Resp2,
    /// RESP3: typed nulls, maps, sets, verbatim strings.
    Resp3,
}

impl Proto {
    /// The number HELLO and CLIENT INFO show.
    #[must_use]
    pub fn number(self) -> i64 {
        match self {
            Self::Resp2 => 2,
            Self::Resp3 => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_args: 8,
        max_bulk_bytes: 16,
        max_inline_bytes: 32,
        authenticated: true,
    };

    /// What a stream of commands parses to: each command's arguments, or `!<n>` for a
    /// command refused for an argument of `n` bytes.
    type Parses = Vec<Vec<String>>;

    /// Parses every command of `input`, fed `step` bytes at a time (the parser resumes, and
    /// the caller drops what it may); `Err` carries the protocol error text.
    fn parse_all(input: &[u8], step: usize, limits: &ParseLimits) -> Result<Parses, String> {
        let mut commands = Vec::new();
        let mut frame = Frame::default();
        // The bytes the caller holds, and how many of the input arrived.
        let (mut buf, mut fed, mut at) = (Vec::new(), 0, 0);
        loop {
            match parse(&buf, at, limits, &mut frame) {
                Ok(Parsed::Command(next)) => {
                    let source = frame.source(&buf);
                    commands.push(
                        frame
                            .args
                            .iter()
                            .map(|&(s, e)| String::from_utf8_lossy(&source[s..e]).into_owned())
                            .collect(),
                    );
                    at = next;
                }
                Ok(Parsed::Rejected(next, Rejection::TooLarge { bytes })) => {
                    commands.push(vec![format!("!{bytes}")]);
                    at = next;
                }
                Ok(Parsed::Incomplete(keep)) => {
                    // Drop what is no longer needed, as the server does.
                    buf.drain(..keep);
                    at = 0;
                    if fed == input.len() {
                        return Ok(commands);
                    }
                    let more = step.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + more]);
                    fed += more;
                }
                Err(ProtocolError(e)) => return Err(e),
            }
        }
    }

    fn check(input: &[u8], expected: Result<Vec<Vec<&str>>, &str>) {
        check_with(input, &LIMITS, expected);
    }

    fn check_with(input: &[u8], limits: &ParseLimits, expected: Result<Vec<Vec<&str>>, &str>) {
        let expected = expected
            .map(|fs| {
                fs.into_iter()
                    .map(|f| f.into_iter().map(String::from).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            })
            .map_err(String::from);
        // Whole, and in every piece size: the same result.
        for step in [input.len().max(1), 1, 2, 3, 7] {
            assert_eq!(
                parse_all(input, step, limits),
                expected,
                "input {:?} in steps of {step}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn multibulk_frames() {
        check(b"*1\r\n$4\r\nPING\r\n", Ok(vec![vec!["PING"]]));
        check(
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n",
            Ok(vec![vec!["GET", ""], vec!["PING"]]),
        );
        check(b"*0\r\n", Ok(vec![vec![]]));
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let full = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            check(&full[..cut], Ok(vec![]));
        }
    }

    #[test]
    fn inline_quotes_and_escapes_as_redis_splits_them() {
        // Each checked against redis-server 7.0's replies to ECHO.
        check(b"echo \"a b\"\r\n", Ok(vec![vec!["echo", "a b"]]));
        check(b"echo a\"b c\"\r\n", Ok(vec![vec!["echo", "ab c"]]));
        check(b"echo 'it\\'s'\r\n", Ok(vec![vec!["echo", "it's"]]));
        check(b"echo \"\\x41\\n\"\r\n", Ok(vec![vec!["echo", "A\n"]]));
        check(b"echo \"\\q\"\r\n", Ok(vec![vec!["echo", "q"]]));
        check(b"echo 'a\\nb'\r\n", Ok(vec![vec!["echo", "a\\nb"]]));
        check(b"echo \"\"\r\n", Ok(vec![vec!["echo", ""]]));
        for bad in [
            &b"echo \"foo\"bar\r\n"[..],
            b"echo \"abc\r\n",
            b"echo 'x\r\n",
            b"echo a\\\"b\r\n",
        ] {
            check(bad, Err("unbalanced quotes in request"));
        }
    }

    #[test]
    fn inline_commands() {
        check(b"PING\r\n", Ok(vec![vec!["PING"]]));
        check(b"set  a   b\n", Ok(vec![vec!["set", "a", "b"]]));
        check(b"\r\n", Ok(vec![vec![]]));
    }

    #[test]
    fn malformed_and_oversized() {
        check(b"*x\r\n", Err("invalid multibulk length"));
        check(b"*9\r\n", Err("invalid multibulk length"));
        check(b"*1\r\n+PING\r\n", Err("expected '$', got '+'"));
        check(b"*1\r\n$-1\r\n", Err("invalid bulk length"));
        check(b"*1\r\n$999999999999\r\n", Err("invalid bulk length"));
        check(
            b"*1\r\n$123456789012345678901234567890123",
            Err("invalid bulk length"),
        );
        check(
            b"*1\r\n$2\r\nabcd\r\n",
            Err("bulk string is not terminated by CRLF"),
        );
        check(&[b'a'; 40], Err("too big inline request"));
    }

    #[test]
    fn an_over_limit_bulk_is_read_past_and_the_command_refused() {
        let big = "x".repeat(40);
        let input = format!(
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$40\r\n{big}\r\n*1\r\n$4\r\nPING\r\n\
             *3\r\n$3\r\nSET\r\n$20\r\n{}\r\n$25\r\n{}\r\n*1\r\n$4\r\nPING\r\n",
            "k".repeat(20),
            "v".repeat(25)
        );
        check(
            input.as_bytes(),
            Ok(vec![vec!["!40"], vec!["PING"], vec!["!25"], vec!["PING"]]),
        );
        // Refused, and nothing of it kept: the caller could drop every byte read past.
        let mut frame = Frame::default();
        let head = b"*2\r\n$3\r\nSET\r\n$1000\r\nxxxxxxxxxx";
        assert_eq!(
            parse(head, 0, &LIMITS, &mut frame),
            Ok(Parsed::Incomplete(head.len()))
        );
    }

    #[test]
    fn before_auth_redis_limits_apply() {
        let limits = ParseLimits {
            authenticated: false,
            max_bulk_bytes: 1 << 20,
            max_args: 1 << 20,
            ..LIMITS
        };
        check_with(b"*11\r\n", &limits, Err("unauthenticated multibulk length"));
        check_with(
            b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
            &limits,
            Err("unauthenticated bulk length"),
        );
        check_with(
            b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n",
            &limits,
            Ok(vec![vec!["AUTH", "secret"]]),
        );
    }

    #[test]
    fn a_dribbled_command_is_parsed_in_linear_time() {
        // 100,000 arguments, fed 7 bytes at a time: re-parsing from the start at every
        // arrival would take about 10^10 steps; resuming takes the bytes once.
        let limits = ParseLimits {
            max_args: 1 << 20,
            ..LIMITS
        };
        let mut input = b"*100001\r\n$4\r\nMGET\r\n".to_vec();
        for i in 0..100_000 {
            let key = format!("k{}", i % 10);
            input.extend_from_slice(format!("${}\r\n{key}\r\n", key.len()).as_bytes());
        }
        let parsed = parse_all(&input, 7, &limits).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].len(), 100_001);
    }

    #[test]
    fn replies_never_break_framing() {
        let mut out = Vec::new();
        reply::error(&mut out, "ERR bad\r\nthing");
        assert_eq!(out, b"-ERR bad  thing\r\n");
    }
}
