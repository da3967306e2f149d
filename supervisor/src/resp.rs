//! RESP2: an incremental request parser with limits, and reply encoding.

/// Parser limits; exceeding one is a protocol error for that client only.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest bulk string.
    pub max_bulk_bytes: usize,
    /// Longest inline command line.
    pub max_inline_bytes: usize,
}

/// A request that breaks the protocol. The connection answers with `-ERR Protocol error:`
/// and closes, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// One parsed command: its arguments as byte ranges of the input buffer.
#[derive(Debug, Default)]
pub struct Frame {
    /// `(start, end)` of each argument in the buffer the frame was parsed from.
    pub args: Vec<(usize, usize)>,
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let slice = buf.get(from..)?;
    let pos = slice.iter().position(|&b| b == b'\n')?;
    let end = from + pos;
    if end > from && buf[end - 1] == b'\r' {
        Some(end - 1)
    } else {
        // A bare \n terminates inline commands; for multibulk Redis requires \r\n.
        Some(end)
    }
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

/// Parses one command starting at `start` of `buf`.
///
/// Returns `Ok(None)` when the frame is incomplete, or the frame and the offset just past it.
pub fn parse(
    buf: &[u8],
    start: usize,
    limits: &ParseLimits,
    frame: &mut Frame,
) -> Result<Option<usize>, ProtocolError> {
    frame.args.clear();
    let Some(&first) = buf.get(start) else {
        return Ok(None);
    };
    if first != b'*' {
        return parse_inline(buf, start, limits, frame);
    }
    let Some(line_end) = find_crlf(buf, start) else {
        if buf.len() - start > limits.max_inline_bytes {
            return Err(ProtocolError("too big multibulk count".into()));
        }
        return Ok(None);
    };
    let count = parse_len(&buf[start + 1..line_end])
        .filter(|&n| n <= limits.max_args as i64)
        .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?;
    let mut at = skip_newline(buf, line_end);
    if count <= 0 {
        return Ok(Some(at));
    }
    for _ in 0..count {
        let Some(&marker) = buf.get(at) else {
            return Ok(None);
        };
        if marker != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                char::from(marker).escape_default()
            )));
        }
        let Some(len_end) = find_crlf(buf, at) else {
            if buf.len() - at > 32 {
                return Err(ProtocolError("invalid bulk length".into()));
            }
            return Ok(None);
        };
        let len = parse_len(&buf[at + 1..len_end])
            .filter(|&n| n >= 0 && n as u64 <= limits.max_bulk_bytes as u64)
            .ok_or_else(|| ProtocolError("invalid bulk length".into()))? as usize;
        let data = skip_newline(buf, len_end);
        let end = data + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError(
                "bulk string is not terminated by CRLF".into(),
            ));
        }
        frame.args.push((data, end));
        at = end + 2;
    }
    Ok(Some(at))
}

fn skip_newline(buf: &[u8], line_end: usize) -> usize {
    if buf.get(line_end) == Some(&b'\r') {
        line_end + 2
    } else {
        line_end + 1
    }
}

fn parse_inline(
    buf: &[u8],
    start: usize,
    limits: &ParseLimits,
    frame: &mut Frame,
) -> Result<Option<usize>, ProtocolError> {
    let Some(line_end) = find_crlf(buf, start) else {
        if buf.len() - start > limits.max_inline_bytes {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(None);
    };
    if line_end - start > limits.max_inline_bytes {
        return Err(ProtocolError("too big inline request".into()));
    }
    let mut i = start;
    while i < line_end {
        while i < line_end && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        let begin = i;
        while i < line_end && !buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > begin {
            if frame.args.len() == limits.max_args {
                return Err(ProtocolError("invalid multibulk length".into()));
            }
            frame.args.push((begin, i));
        }
    }
    Ok(Some(skip_newline(buf, line_end)))
}

/// Reply encoding into a growing output buffer.
pub mod reply {
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

    /// `$-1`.
    pub fn nil(out: &mut Vec<u8>) {
        out.extend_from_slice(b"$-1\r\n");
    }

    /// `*n`, followed by `n` replies written by the caller.
    pub fn array(out: &mut Vec<u8>, n: usize) {
        out.push(b'*');
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_args: 8,
        max_bulk_bytes: 16,
        max_inline_bytes: 32,
    };

    /// Parses every frame of `input`; `Err` carries the protocol error text.
    fn check(input: &[u8], expected: Result<Vec<Vec<&str>>, &str>) {
        let mut frames = Vec::new();
        let mut at = 0;
        let mut frame = Frame::default();
        let got = loop {
            match parse(input, at, &LIMITS, &mut frame) {
                Ok(Some(next)) => {
                    frames.push(
                        frame
                            .args
                            .iter()
                            .map(|&(s, e)| String::from_utf8_lossy(&input[s..e]).into_owned())
                            .collect::<Vec<_>>(),
                    );
                    at = next;
                }
                Ok(None) => break Ok(frames),
                Err(ProtocolError(e)) => break Err(e),
            }
        };
        let expected = expected
            .map(|fs| {
                fs.into_iter()
                    .map(|f| f.into_iter().map(String::from).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            })
            .map_err(String::from);
        assert_eq!(got, expected, "input {:?}", String::from_utf8_lossy(input));
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
        check(b"*1\r\n$17\r\n", Err("invalid bulk length"));
        check(b"*1\r\n$-1\r\n", Err("invalid bulk length"));
        check(
            b"*1\r\n$2\r\nabcd\r\n",
            Err("bulk string is not terminated by CRLF"),
        );
        check(&[b'a'; 40], Err("too big inline request"));
    }

    #[test]
    fn replies_never_break_framing() {
        let mut out = Vec::new();
        reply::error(&mut out, "ERR bad\r\nthing");
        assert_eq!(out, b"-ERR bad  thing\r\n");
    }
}
