//! Which addresses a webhook may be sent to (the SSRF guard's pure half).
//!
//! A tenant controls its URL, so without a guard a tenant could make
//! hookline POST to the provider's own network: the cloud metadata service
//! at 169.254.169.254, an admin port on localhost, a database on 10.0.0.0/8.
//! [`classify`] says whether an address is public or in a range that
//! deliveries must not reach. The connector (elsewhere) resolves the host,
//! classifies every resolved address and connects only to the address it
//! checked, so DNS rebinding between check and connect is impossible.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible,
//! IPv4-translated, NAT64 and 6to4) are classified by the IPv4 address they
//! lead to; everything outside global unicast `2000::/3` is blocked, so an
//! address block that IANA assigns for special use later starts out blocked
//! rather than open.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Whether deliveries may reach an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    Public,
    Blocked(BlockedRange),
}

impl Destination {
    /// Whether a delivery may connect, given
    /// `delivery.allow_private_destinations` (default false). Allowing
    /// private destinations allows every range: it exists for development
    /// and for receivers inside the provider's own network.
    pub fn is_permitted(self, allow_private_destinations: bool) -> bool {
        allow_private_destinations || self == Destination::Public
    }
}

/// The special-purpose range a blocked address belongs to (IANA IPv4 and
/// IPv6 Special-Purpose Address Registries, RFC 6890 and successors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockedRange {
    /// `0.0.0.0/8` ("this network"; Linux connects 0.0.0.0 to localhost)
    /// and `::`.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`; also the
    /// local-use NAT64 prefix `64:ff9b:1::/48`, whose IPv4 part depends on
    /// the operator's translator.
    Private,
    /// Carrier-grade NAT, `100.64.0.0/10` (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16` (cloud metadata services live here) and `fe80::/10`.
    LinkLocal,
    /// IETF protocol assignments, `192.0.0.0/24`.
    ProtocolAssignments,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`,
    /// `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4`, the deprecated 6to4 relay anycast `192.88.99.0/24`,
    /// IPv6 outside `2000::/3` (discard-only `100::/64`, deprecated
    /// site-local `fec0::/10`, unassigned space) and the ORCHID identifier
    /// ranges `2001:10::/28` and `2001:20::/28`.
    Reserved,
    /// Unique local IPv6, `fc00::/7`.
    UniqueLocal,
    /// Teredo, `2001::/32`: the IPv4 endpoints it tunnels to are obfuscated
    /// in the address and cannot be checked.
    Teredo,
}

impl BlockedRange {
    /// A bounded, stable label (for metrics and structured logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            BlockedRange::Unspecified => "unspecified",
            BlockedRange::Loopback => "loopback",
            BlockedRange::Private => "private",
            BlockedRange::SharedAddressSpace => "shared_address_space",
            BlockedRange::LinkLocal => "link_local",
            BlockedRange::ProtocolAssignments => "protocol_assignments",
            BlockedRange::Documentation => "documentation",
            BlockedRange::Benchmarking => "benchmarking",
            BlockedRange::Multicast => "multicast",
            BlockedRange::Broadcast => "broadcast",
            BlockedRange::Reserved => "reserved",
            BlockedRange::UniqueLocal => "unique_local",
            BlockedRange::Teredo => "teredo",
        }
    }

    fn description(self) -> &'static str {
        match self {
            BlockedRange::Unspecified => "unspecified address (0.0.0.0/8, ::)",
            BlockedRange::Loopback => "loopback address (127.0.0.0/8, ::1)",
            BlockedRange::Private => "private network address (RFC 1918)",
            BlockedRange::SharedAddressSpace => "carrier-grade NAT address (100.64.0.0/10)",
            BlockedRange::LinkLocal => "link-local address (169.254.0.0/16, fe80::/10)",
            BlockedRange::ProtocolAssignments => "IETF protocol assignment (192.0.0.0/24)",
            BlockedRange::Documentation => "documentation address",
            BlockedRange::Benchmarking => "benchmarking address (198.18.0.0/15, 2001:2::/48)",
            BlockedRange::Multicast => "multicast address",
            BlockedRange::Broadcast => "broadcast address",
            BlockedRange::Reserved => "reserved address",
            BlockedRange::UniqueLocal => "unique local address (fc00::/7)",
            BlockedRange::Teredo => "Teredo address (2001::/32)",
        }
    }
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Classifies one address.
pub fn classify(ip: IpAddr) -> Destination {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Destination {
    use BlockedRange::*;
    let range = match ip.octets() {
        [0, ..] => Unspecified,
        [127, ..] => Loopback,
        [10, ..] => Private,
        [172, second, ..] if second & 0xf0 == 16 => Private,
        [192, 168, ..] => Private,
        [169, 254, ..] => LinkLocal,
        [100, second, ..] if second & 0xc0 == 64 => SharedAddressSpace,
        [192, 0, 0, _] => ProtocolAssignments,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Documentation,
        [198, second, ..] if second & 0xfe == 18 => Benchmarking,
        [192, 88, 99, _] => Reserved,
        [255, 255, 255, 255] => Broadcast,
        [first, ..] if first & 0xf0 == 224 => Multicast,
        [first, ..] if first & 0xf0 == 240 => Reserved,
        _ => return Destination::Public,
    };
    Destination::Blocked(range)
}

fn classify_v6(ip: Ipv6Addr) -> Destination {
    use BlockedRange::*;
    if ip.is_unspecified() {
        return Destination::Blocked(Unspecified);
    }
    if ip.is_loopback() {
        return Destination::Blocked(Loopback);
    }
    if let Some(embedded) = embedded_ipv4(ip) {
        return classify_v4(embedded);
    }
    let s = ip.segments();
    let range = match s {
        [0x64, 0xff9b, 1, ..] => Private,
        [0x2001, 0, ..] => Teredo,
        [0x2001, 2, 0, ..] => Benchmarking,
        [0x2001, second, ..] if second & 0xfff0 == 0x10 || second & 0xfff0 == 0x20 => Reserved,
        [0x2001, 0xdb8, ..] => Documentation,
        [0x3fff, second, ..] if second & 0xf000 == 0 => Documentation,
        [first, ..] if first & 0xfe00 == 0xfc00 => UniqueLocal,
        [first, ..] if first & 0xffc0 == 0xfe80 => LinkLocal,
        [first, ..] if first & 0xff00 == 0xff00 => Multicast,
        // Outside global unicast: site-local, discard-only, unassigned.
        [first, ..] if first & 0xe000 != 0x2000 => Reserved,
        _ => return Destination::Public,
    };
    Destination::Blocked(range)
}

/// The IPv4 address an IPv6 address leads to, for the forms that embed one
/// at a fixed position. `::` and `::1` are handled before this is called:
/// they fall inside the IPv4-compatible prefix but are not IPv4 addresses.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low_32 = Ipv4Addr::from(bits as u32);
    let s = ip.segments();
    match s {
        // IPv4-compatible ::a.b.c.d (deprecated, RFC 4291 §2.5.5.1).
        [0, 0, 0, 0, 0, 0, _, _] => Some(low_32),
        // IPv4-mapped ::ffff:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low_32),
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low_32),
        // Well-known NAT64 prefix 64:ff9b::/96 (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low_32),
        // 6to4 2002:a.b.c.d::/48 (RFC 3056): the IPv4 part is bits 16..48.
        [0x2002, high, low, ..] => Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))),
        _ => None,
    }
}

/// The IP address a URL's host denotes, when it is an IP literal in any of
/// the forms a browser or `inet_aton` accepts: `127.0.0.1`, `2130706433`,
/// `0x7f.1`, `0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`. `None` for a
/// domain name (which the connector must resolve) and for a URL without a
/// host.
///
/// The `url` crate's WHATWG host parser already turns the numeric IPv4 forms
/// into an address for http and https URLs. For other schemes the host stays
/// opaque, so it is passed through the same parser again: a resolver would
/// still read `2130706433` as 127.0.0.1.
pub fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(domain) => match Host::parse(domain).ok()? {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(_) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BlockedRange::*;

    fn class(address: &str) -> Destination {
        classify(address.parse().unwrap_or_else(|e| panic!("{address}: {e}")))
    }

    fn assert_blocked(range: BlockedRange, addresses: &[&str]) {
        for address in addresses {
            assert_eq!(class(address), Destination::Blocked(range), "{address}");
        }
    }

    fn assert_public(addresses: &[&str]) {
        for address in addresses {
            assert_eq!(class(address), Destination::Public, "{address}");
        }
    }

    #[test]
    fn ipv4_this_network() {
        assert_blocked(Unspecified, &["0.0.0.0", "0.1.2.3", "0.255.255.255"]);
    }

    #[test]
    fn ipv4_loopback_is_the_whole_slash_8() {
        assert_blocked(
            Loopback,
            &["127.0.0.1", "127.0.0.0", "127.1.2.3", "127.255.255.255"],
        );
        assert_public(&["126.255.255.255", "128.0.0.0"]);
    }

    #[test]
    fn ipv4_private_ranges_and_their_edges() {
        assert_blocked(
            Private,
            &[
                "10.0.0.0",
                "10.255.255.255",
                "172.16.0.0",
                "172.31.255.255",
                "192.168.0.0",
                "192.168.255.255",
            ],
        );
        assert_public(&[
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
        ]);
    }

    #[test]
    fn ipv4_link_local_includes_the_metadata_service() {
        assert_blocked(
            LinkLocal,
            &["169.254.169.254", "169.254.0.0", "169.254.255.255"],
        );
        assert_public(&["169.253.255.255", "169.255.0.0"]);
    }

    #[test]
    fn ipv4_carrier_grade_nat() {
        assert_blocked(
            SharedAddressSpace,
            &["100.64.0.0", "100.100.100.100", "100.127.255.255"],
        );
        assert_public(&["100.63.255.255", "100.128.0.0"]);
    }

    #[test]
    fn ipv4_protocol_assignments() {
        assert_blocked(
            ProtocolAssignments,
            &["192.0.0.0", "192.0.0.8", "192.0.0.255"],
        );
        assert_public(&["192.0.1.0"]);
    }

    #[test]
    fn ipv4_documentation_ranges() {
        assert_blocked(
            Documentation,
            &["192.0.2.0", "192.0.2.255", "198.51.100.7", "203.0.113.255"],
        );
        assert_public(&["192.0.3.0", "198.51.101.0", "203.0.114.0"]);
    }

    #[test]
    fn ipv4_benchmarking() {
        assert_blocked(Benchmarking, &["198.18.0.0", "198.19.255.255"]);
        assert_public(&["198.17.255.255", "198.20.0.0"]);
    }

    #[test]
    fn ipv4_multicast_reserved_and_broadcast() {
        assert_blocked(Multicast, &["224.0.0.0", "224.0.0.251", "239.255.255.255"]);
        assert_blocked(
            Reserved,
            &["240.0.0.0", "250.1.2.3", "255.255.255.254", "192.88.99.1"],
        );
        assert_blocked(Broadcast, &["255.255.255.255"]);
        assert_public(&["223.255.255.255"]);
    }

    #[test]
    fn ipv4_public_addresses() {
        assert_public(&[
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.0.1",
            "172.217.0.1",
            "192.0.3.1",
        ]);
    }

    #[test]
    fn ipv6_unspecified_and_loopback() {
        assert_blocked(Unspecified, &["::"]);
        assert_blocked(Loopback, &["::1"]);
    }

    #[test]
    fn ipv6_local_ranges() {
        assert_blocked(
            UniqueLocal,
            &["fc00::", "fd12:3456:789a::1", "fdff:ffff::1"],
        );
        assert_blocked(LinkLocal, &["fe80::1", "febf:ffff::1"]);
        assert_blocked(Reserved, &["fec0::1", "feff::1"]);
        assert_blocked(Multicast, &["ff02::1", "ff0e::1", "ffff::1"]);
    }

    #[test]
    fn ipv6_documentation_and_benchmarking() {
        assert_blocked(
            Documentation,
            &["2001:db8::1", "2001:db8:ffff::1", "3fff::1", "3fff:fff::1"],
        );
        assert_blocked(Benchmarking, &["2001:2::1", "2001:2:0:ffff::1"]);
        assert_public(&["2001:db9::1", "3fff:1000::1", "2001:3::1"]);
    }

    #[test]
    fn ipv6_teredo_and_orchid() {
        assert_blocked(Teredo, &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"]);
        assert_blocked(
            Reserved,
            &["2001:10::1", "2001:1f::1", "2001:20::1", "2001:2f::1"],
        );
        assert_public(&["2001:1::1", "2001:30::1", "2001:4860::8888"]);
    }

    #[test]
    fn ipv6_outside_global_unicast_is_reserved() {
        assert_blocked(
            Reserved,
            &["100::1", "100::", "4000::1", "8000::1", "e000::1", "1::1"],
        );
    }

    #[test]
    fn ipv6_public_addresses() {
        assert_public(&[
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "3ffe::1",
        ]);
    }

    #[test]
    fn ipv4_mapped_is_classified_by_its_ipv4_address() {
        assert_blocked(Loopback, &["::ffff:127.0.0.1", "::ffff:7f00:1"]);
        assert_blocked(LinkLocal, &["::ffff:169.254.169.254"]);
        assert_blocked(Private, &["::ffff:10.0.0.1", "::ffff:192.168.1.1"]);
        assert_blocked(Unspecified, &["::ffff:0.0.0.0"]);
        assert_public(&["::ffff:8.8.8.8"]);
    }

    #[test]
    fn ipv4_compatible_and_translated_are_classified_by_their_ipv4_address() {
        assert_blocked(Loopback, &["::127.0.0.1", "::ffff:0:127.0.0.1"]);
        assert_blocked(Private, &["::10.1.2.3", "::ffff:0:172.16.0.1"]);
        // `::2` is the IPv4-compatible form of 0.0.0.2.
        assert_blocked(Unspecified, &["::2"]);
        assert_public(&["::8.8.8.8", "::ffff:0:1.1.1.1"]);
    }

    #[test]
    fn nat64_is_classified_by_its_ipv4_address() {
        assert_blocked(Loopback, &["64:ff9b::127.0.0.1", "64:ff9b::7f00:1"]);
        assert_blocked(LinkLocal, &["64:ff9b::169.254.169.254"]);
        assert_public(&["64:ff9b::8.8.8.8"]);
        // Local-use NAT64: the IPv4 position depends on the translator.
        assert_blocked(Private, &["64:ff9b:1::1", "64:ff9b:1:ffff::8.8.8.8"]);
        // Outside the well-known /96 and not global unicast.
        assert_blocked(Reserved, &["64:ff9b:0:0:1::1"]);
    }

    #[test]
    fn six_to_four_is_classified_by_its_ipv4_address() {
        assert_blocked(Loopback, &["2002:7f00:1::", "2002:7f00:1:ffff::1"]);
        assert_blocked(Private, &["2002:c0a8:101::1", "2002:a00:1::"]);
        assert_blocked(LinkLocal, &["2002:a9fe:a9fe::1"]);
        assert_public(&["2002:808:808::1"]);
    }

    #[test]
    fn only_public_is_permitted_unless_private_destinations_are_allowed() {
        assert!(Destination::Public.is_permitted(false));
        assert!(Destination::Public.is_permitted(true));
        assert!(!Destination::Blocked(Loopback).is_permitted(false));
        assert!(Destination::Blocked(Loopback).is_permitted(true));
    }

    #[test]
    fn blocked_range_labels_are_distinct_snake_case() {
        let all = [
            Unspecified,
            Loopback,
            Private,
            SharedAddressSpace,
            LinkLocal,
            ProtocolAssignments,
            Documentation,
            Benchmarking,
            Multicast,
            Broadcast,
            Reserved,
            UniqueLocal,
            Teredo,
        ];
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
        assert!(
            labels
                .iter()
                .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert!(LinkLocal.to_string().contains("169.254.0.0/16"));
    }

    fn url_ip(url: &str) -> Option<IpAddr> {
        host_ip(&Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}")))
    }

    #[test]
    fn url_hosts_in_every_ipv4_spelling_are_loopback() {
        let loopback = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://0x7F.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://127.0.0.1./",
            "https://127.0.0.1:8443/hook",
            "http://user:pass@2130706433:80/x",
            "http://%31%32%37.0.0.1/",
            "http://１２７.０.０.１/",
        ] {
            let ip = url_ip(url);
            assert_eq!(ip, loopback, "{url}");
            assert_eq!(
                classify(ip.unwrap()),
                Destination::Blocked(Loopback),
                "{url}"
            );
        }
    }

    #[test]
    fn url_hosts_for_the_metadata_service() {
        for url in [
            "http://169.254.169.254/",
            "http://2852039166/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://0251.0376.0251.0376/",
        ] {
            let ip = url_ip(url).unwrap();
            assert_eq!(ip, IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), "{url}");
            assert_eq!(classify(ip), Destination::Blocked(LinkLocal));
        }
    }

    #[test]
    fn url_hosts_in_ipv6_brackets() {
        assert_eq!(url_ip("http://[::1]/"), Some("::1".parse().unwrap()));
        let mapped = url_ip("http://[::ffff:127.0.0.1]:8080/").unwrap();
        assert_eq!(classify(mapped), Destination::Blocked(Loopback));
        let mapped_hex = url_ip("http://[::ffff:7f00:1]/").unwrap();
        assert_eq!(classify(mapped_hex), Destination::Blocked(Loopback));
        assert_eq!(
            url_ip("http://[2606:4700:4700::1111]/").map(classify),
            Some(Destination::Public)
        );
    }

    #[test]
    fn url_domains_are_not_ip_literals() {
        for url in [
            "http://localhost/",
            "https://hooks.customer.example/hookline",
            "http://127.0.0.1.nip.io/",
            "http://1.2.3.4.example/",
            "http://0x7f.example/",
        ] {
            assert_eq!(url_ip(url), None, "{url}");
        }
    }

    #[test]
    fn opaque_hosts_of_other_schemes_are_read_like_a_resolver_would() {
        // Not a special scheme, so `url` keeps the host opaque; the resolver
        // behind a connector would still read it as 127.0.0.1.
        assert_eq!(
            url_ip("foo://2130706433/"),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            url_ip("foo://0x7f.1/"),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(url_ip("foo://[::1]/"), Some("::1".parse().unwrap()));
        assert_eq!(url_ip("foo://example.com/"), None);
    }

    #[test]
    fn url_without_a_host_has_no_ip() {
        assert_eq!(url_ip("mailto:ops@example.com"), None);
        assert_eq!(url_ip("file:///etc/passwd"), None);
    }

    #[test]
    fn invalid_numeric_hosts_do_not_parse_as_urls() {
        // Out-of-range numeric forms are URL errors, so they never reach the
        // connector as a domain name that a resolver might read differently.
        for url in [
            "http://4294967296/",
            "http://256.0.0.1/",
            "http://0x100000000/",
            "http://1.2.3.4.5/",
        ] {
            assert!(Url::parse(url).is_err(), "{url}");
        }
    }
}
