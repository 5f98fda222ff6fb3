//! Who a client is, by address: the address behind trusted proxies (`HUB_TRUSTED_PROXIES`:
//! `X-Forwarded-For` and `Forwarded` are read only when the socket's peer is one of them), and
//! the key the per-address limits count under (IPv6 per /64: one host usually holds a whole
//! /64, so counting per /128 would let it through every limit).

use std::net::{IpAddr, Ipv6Addr};

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/bits`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address or a CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0-{max}"))?,
        };
        Ok(Cidr {
            net: mask(net, bits),
            bits,
        })
    }

    /// True when `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.bits) == self.net
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key per-address limits count a client under: its IPv4 address, or its IPv6 /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => mask(IpAddr::V6(v6), 64),
        v4 => v4,
    }
}

/// The proxies whose forwarding headers are believed (`HUB_TRUSTED_PROXIES`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR blocks.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The blocks, for the startup log.
    pub fn blocks(&self) -> &[Cidr] {
        &self.0
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: the socket's `peer`, unless it is a trusted proxy; then the
    /// nearest address in the forwarding chain that is not a trusted proxy (`Forwarded`'s
    /// `for=` when that header is present, else `X-Forwarded-For`, read from the right). A
    /// chain that cannot be read leaves the peer (the proxy) as the client.
    pub fn client(
        &self,
        peer: IpAddr,
        forwarded: Option<&str>,
        x_forwarded_for: Option<&str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let chain: Option<Vec<IpAddr>> = match (forwarded, x_forwarded_for) {
            (Some(f), _) => forwarded_for(f),
            (None, Some(x)) => x.split(',').map(|a| parse_hop(a.trim())).collect(),
            (None, None) => None,
        };
        let Some(chain) = chain else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        client
    }
}

/// The `for=` addresses of a `Forwarded` header (RFC 7239), in order; `None` when one is
/// missing or not an address (`unknown`, an obfuscated name).
fn forwarded_for(header: &str) -> Option<Vec<IpAddr>> {
    header
        .split(',')
        .map(|element| {
            let value = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            })?;
            parse_hop(value.trim_matches('"'))
        })
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(limit_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn blocks_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, fd00::/8").unwrap();
        let xff = Some("203.0.113.7, 10.0.0.5");
        assert_eq!(proxies.client(ip("10.0.0.9"), None, xff), ip("203.0.113.7"));
        assert_eq!(
            proxies.client(ip("198.51.100.1"), None, xff),
            ip("198.51.100.1"),
            "an untrusted peer's headers are ignored"
        );
        // A client cannot hide behind a forged left part: the nearest untrusted hop counts.
        let forged = Some("1.1.1.1, 203.0.113.7");
        assert_eq!(
            proxies.client(ip("10.0.0.9"), None, forged),
            ip("203.0.113.7")
        );
        let fwd = Some(r#"for=192.0.2.60;proto=https, for="[fd00::3]:4711""#);
        assert_eq!(proxies.client(ip("fd00::1"), fwd, xff), ip("192.0.2.60"));
        assert_eq!(
            proxies.client(ip("10.0.0.9"), Some("for=unknown"), None),
            ip("10.0.0.9")
        );
        assert_eq!(
            proxies.client(ip("10.0.0.9"), None, Some("junk")),
            ip("10.0.0.9")
        );
        assert_eq!(proxies.client(ip("10.0.0.9"), None, None), ip("10.0.0.9"));
        assert_eq!(
            proxies.client(ip("10.0.0.9"), None, Some("10.0.0.1, 203.0.113.8:443")),
            ip("203.0.113.8")
        );
        assert!(TrustedProxies::parse("10.0.0.0/8,bad").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
