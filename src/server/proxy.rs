//! proxy: the PROXY protocol header (HAProxy's specification, versions 1 and 2) that a TCP
//! balancer sends before the client's first byte, so the server learns the client's address.
//!
//! Guarantees:
//! - It is read only from a peer the configuration lists (`proxy_from`); from such a peer a
//!   missing or malformed header ends the connection before the greeting. From anyone else no
//!   header is looked for: a forged `PROXY` line is just a bad command.
//! - Exactly the header's bytes are read (v1 up to its CRLF, at most 107 bytes; v2 its fixed
//!   16 bytes and then its stated length, at most [`MAX_V2_LEN`]), so nothing of the client's
//!   own data is consumed. Parsing never panics on any input.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The 12-byte signature that starts a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, CRLF included (the specification's figure).
const MAX_V1_LEN: usize = 107;
/// The longest version 2 address block accepted (addresses and TLVs).
pub const MAX_V2_LEN: usize = 1024;

/// What a header says about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// A proxied connection from this client address.
    Client(IpAddr),
    /// The balancer's own connection (v2 LOCAL, v1 UNKNOWN, or an address family other than
    /// TCP over IPv4/IPv6): the peer's own address stands.
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The stream ended inside the header.
    Truncated,
    /// Not a PROXY header at all.
    Missing,
    /// A header whose contents do not parse, with what was wrong.
    Malformed(&'static str),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Truncated => write!(f, "the connection ended inside the PROXY header"),
            Refused::Missing => write!(f, "no PROXY header from a listed balancer"),
            Refused::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
        }
    }
}

/// Reads one header from `input` (see the module comment). I/O errors (the read timeout
/// included) are returned as they are.
pub fn read_header(input: &mut impl Read) -> io::Result<Result<Header, Refused>> {
    let mut start = [0u8; 16];
    if !read_exact_or_eof(input, &mut start[..6])? {
        return Ok(Err(Refused::Truncated));
    }
    if &start[..6] == b"PROXY " {
        let mut line = start[..6].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= MAX_V1_LEN {
                return Ok(Err(Refused::Malformed("a version 1 line over 107 bytes")));
            }
            let mut byte = [0u8; 1];
            if !read_exact_or_eof(input, &mut byte)? {
                return Ok(Err(Refused::Truncated));
            }
            line.push(byte[0]);
        }
        return Ok(parse_v1(&line));
    }
    if start[..6] != V2_SIGNATURE[..6] {
        return Ok(Err(Refused::Missing));
    }
    if !read_exact_or_eof(input, &mut start[6..])? {
        return Ok(Err(Refused::Truncated));
    }
    if &start[..12] != V2_SIGNATURE {
        return Ok(Err(Refused::Missing));
    }
    let len = usize::from(u16::from_be_bytes([start[14], start[15]]));
    if len > MAX_V2_LEN {
        return Ok(Err(Refused::Malformed(
            "a version 2 header over 1024 bytes",
        )));
    }
    let mut rest = vec![0u8; len];
    if !read_exact_or_eof(input, &mut rest)? {
        return Ok(Err(Refused::Truncated));
    }
    Ok(parse_v2(start[12], start[13], &rest))
}

/// Fills `buf`; `Ok(false)` if the stream ends first.
fn read_exact_or_eof(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(line: &[u8]) -> Result<Header, Refused> {
    let text = std::str::from_utf8(&line[..line.len() - 2])
        .map_err(|_| Refused::Malformed("a version 1 line that is not ASCII"))?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.get(1) {
        Some(&"UNKNOWN") => return Ok(Header::Local),
        Some(&"TCP4") | Some(&"TCP6") => {}
        _ => {
            return Err(Refused::Malformed(
                "a version 1 protocol other than TCP4, TCP6, UNKNOWN",
            ))
        }
    }
    if fields.len() != 6 {
        return Err(Refused::Malformed(
            "a version 1 line without its six fields",
        ));
    }
    let source: IpAddr = match fields[1] {
        "TCP4" => fields[2].parse::<Ipv4Addr>().map(IpAddr::V4),
        _ => fields[2].parse::<Ipv6Addr>().map(IpAddr::V6),
    }
    .map_err(|_| Refused::Malformed("a version 1 source address that does not parse"))?;
    let destination_ok = match fields[1] {
        "TCP4" => fields[3].parse::<Ipv4Addr>().is_ok(),
        _ => fields[3].parse::<Ipv6Addr>().is_ok(),
    };
    let port = |p: &str| !p.starts_with('0') || p == "0";
    let ports_ok = fields[4..]
        .iter()
        .all(|p| port(p) && p.parse::<u16>().is_ok());
    if !destination_ok || !ports_ok {
        return Err(Refused::Malformed(
            "a version 1 destination or port that does not parse",
        ));
    }
    Ok(Header::Client(source))
}

/// The version 2 command byte, family byte and address block.
fn parse_v2(version_command: u8, family: u8, block: &[u8]) -> Result<Header, Refused> {
    if version_command >> 4 != 2 {
        return Err(Refused::Malformed("a version 2 header of another version"));
    }
    match version_command & 0x0f {
        0 => return Ok(Header::Local),
        1 => {}
        _ => {
            return Err(Refused::Malformed(
                "a version 2 command other than LOCAL or PROXY",
            ))
        }
    }
    // High nibble: address family; low nibble: transport (1 = stream).
    match family {
        0x11 if block.len() >= 12 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Ok(Header::Client(IpAddr::V4(ip)))
        }
        0x21 if block.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            Ok(Header::Client(IpAddr::V6(Ipv6Addr::from(octets))))
        }
        0x11 | 0x21 => Err(Refused::Malformed("a version 2 address block too short")),
        // UNSPEC, UDP, UNIX sockets: nothing to say about a TCP client.
        _ => Ok(Header::Local),
    }
}

/// Whether `ip` is one of `listed` (`address` or `address/prefix`, IPv4 or IPv6; an IPv4 client
/// on an IPv6 socket counts as its IPv4 address).
pub fn is_listed(ip: IpAddr, listed: &[Network]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    listed.iter().any(|n| n.contains(ip))
}

/// An address or network of `proxy_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address` or `address/prefix`.
    pub fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { address, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.address.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        // An IPv4 address sits in the top 32 bits, so a prefix masks the same way for both.
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        bits(self.address) & mask == bits(ip) & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Result<Header, Refused>, Vec<u8>) {
        let mut input = std::io::Cursor::new(bytes.to_vec());
        let header = read_header(&mut input).unwrap();
        let rest = bytes[input.position() as usize..].to_vec();
        (header, rest)
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn version_1_reads_exactly_the_header() {
        let (h, rest) = read(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\r\nUSER x\r\n");
        assert_eq!(h, Ok(Header::Client("192.0.2.7".parse().unwrap())));
        assert_eq!(rest, b"USER x\r\n");
        let (h, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 110\r\n");
        assert_eq!(h, Ok(Header::Client("2001:db8::7".parse().unwrap())));
        assert_eq!(read(b"PROXY UNKNOWN\r\n").0, Ok(Header::Local));
        assert_eq!(
            read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").0,
            Ok(Header::Local)
        );
    }

    #[test]
    fn version_1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
        ] {
            assert!(
                matches!(read(bad).0, Err(Refused::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        assert!(matches!(
            read(long.as_bytes()).0,
            Err(Refused::Malformed(_))
        ));
        assert_eq!(read(b"PROXY TCP4 1.2.3.4").0, Err(Refused::Truncated));
        assert_eq!(read(b"USER alice\r\n").0, Err(Refused::Missing));
        assert_eq!(read(b"PRO").0, Err(Refused::Truncated));
    }

    #[test]
    fn version_2() {
        let mut block = vec![192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0, 110];
        let (h, rest) = read(&[v2(1, 0x11, &block), b"CAPA\r\n".to_vec()].concat());
        assert_eq!(h, Ok(Header::Client("192.0.2.7".parse().unwrap())));
        assert_eq!(rest, b"CAPA\r\n");
        // TLVs after the addresses are skipped.
        block.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]);
        assert_eq!(
            read(&v2(1, 0x11, &block)).0,
            Ok(Header::Client("192.0.2.7".parse().unwrap()))
        );
        let mut six = vec![0u8; 36];
        six[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            read(&v2(1, 0x21, &six)).0,
            Ok(Header::Client("2001:db8::7".parse().unwrap()))
        );
        assert_eq!(read(&v2(0, 0x00, &[])).0, Ok(Header::Local));
        assert_eq!(read(&v2(1, 0x31, &[0; 216])).0, Ok(Header::Local));
        assert!(matches!(
            read(&v2(1, 0x11, &[1, 2, 3])).0,
            Err(Refused::Malformed(_))
        ));
        assert!(matches!(
            read(&v2(2, 0x11, &block)).0,
            Err(Refused::Malformed(_))
        ));
        let mut other_version = v2(1, 0x11, &block);
        other_version[12] = 0x11;
        assert!(matches!(read(&other_version).0, Err(Refused::Malformed(_))));
        let mut huge = v2(1, 0x11, &[]);
        huge[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(read(&huge).0, Err(Refused::Malformed(_))));
        assert_eq!(read(&v2(1, 0x11, &block)[..20]).0, Err(Refused::Truncated));
        let mut bad_signature = v2(1, 0x11, &block);
        bad_signature[8] = b'X';
        assert_eq!(read(&bad_signature).0, Err(Refused::Missing));
    }

    #[test]
    fn any_bytes_parse_without_panic() {
        let mut seed = 0x1234_5678u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 60) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (seed.rotate_left(i as u32) & 0xff) as u8)
                .collect();
            if seed.is_multiple_of(3) {
                bytes.splice(0..0, b"PROXY ".iter().copied());
            } else if seed % 3 == 1 {
                bytes.splice(0..0, V2_SIGNATURE.iter().copied());
            }
            let _ = read(&bytes);
        }
    }

    #[test]
    fn networks() {
        let list: Vec<Network> = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]
            .iter()
            .map(|t| Network::parse(t).unwrap())
            .collect();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(is_listed(ip("127.0.0.1"), &list));
        assert!(!is_listed(ip("127.0.0.2"), &list));
        assert!(is_listed(ip("10.200.1.1"), &list));
        assert!(!is_listed(ip("11.0.0.1"), &list));
        assert!(is_listed(ip("2001:db8:1::5"), &list));
        assert!(!is_listed(ip("2001:db9::5"), &list));
        assert!(is_listed(ip("::ffff:127.0.0.1"), &list));
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("not an address").is_none());
        assert!(is_listed(
            ip("8.8.8.8"),
            &[Network::parse("0.0.0.0/0").unwrap()]
        ));
    }
}
