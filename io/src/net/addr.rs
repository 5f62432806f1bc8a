//! Addresses: [`ToSocketAddrs`] and [`lookup_host`], as in `tokio::net`.
//!
//! Every constructor that takes an address (`TcpListener::bind`,
//! `TcpStream::connect`, `UdpSocket::bind`, `connect`, `send_to`) goes
//! through [`resolve`]. What is already an address (a [`SocketAddr`], an IP
//! and a port, an `"ip:port"` string, a slice of addresses) resolves at once,
//! on the calling thread, with no system call and (for one address) no
//! allocation. A host name goes to `getaddrinfo(3)` through std's resolver,
//! which blocks its thread for as long as DNS takes; so it runs on the
//! runtime's blocking pool ([`crate::blocking`]), and the task awaits its
//! answer as it would a socket: a worker never waits on DNS.
//!
//! The trait is sealed, as tokio's is: its one method is private, so which
//! inputs go to the pool is this module's decision, and it can change
//! without breaking anyone.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::panic::Location;

/// Something that resolves to socket addresses: what `bind`, `connect` and
/// `send_to` take, and [`lookup_host`] resolves.
///
/// Implemented for the same types as tokio's `ToSocketAddrs`:
/// [`SocketAddr`], [`SocketAddrV4`], [`SocketAddrV6`], `(IpAddr, u16)`,
/// `(Ipv4Addr, u16)`, `(Ipv6Addr, u16)`, `&[SocketAddr]`, `str` and
/// [`String`] (`"host:port"`), `(&str, u16)` and `(String, u16)`, and `&T`
/// for each of these. It is sealed: other types cannot implement it.
///
/// An address, or a string or pair whose host is an IP literal, resolves at
/// once without leaving the task. A host name is resolved on the runtime's
/// blocking pool (see [`lookup_host`]).
///
/// # Examples
///
/// ```
/// use bulwark::net::ToSocketAddrs;
/// use std::net::{Ipv4Addr, SocketAddr};
///
/// fn takes(_: impl ToSocketAddrs) {}
///
/// takes("127.0.0.1:8080");
/// takes(("localhost", 8080));
/// takes((Ipv4Addr::LOCALHOST, 8080));
/// takes(SocketAddr::from(([127, 0, 0, 1], 8080)));
/// takes(&[SocketAddr::from(([127, 0, 0, 1], 8080))][..]);
/// ```
pub trait ToSocketAddrs: sealed::ToSocketAddrsPriv {}

/// The trait's one method and what it returns, out of reach of other crates.
pub(crate) mod sealed {
    use std::net::SocketAddr;
    use std::{io, option, vec};

    /// What [`ToSocketAddrs`](super::ToSocketAddrs) does: says whether the
    /// value is an address already or needs a lookup.
    pub trait ToSocketAddrsPriv {
        /// The addresses at once, or the name to look up.
        #[doc(hidden)]
        fn to_resolve(&self, _: Internal) -> Resolve;
    }

    /// A token only this crate can make, so nobody else calls `to_resolve`.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct Internal(pub(super) ());

    /// The answer of `to_resolve`.
    #[doc(hidden)]
    #[derive(Debug)]
    pub enum Resolve {
        /// Resolved at once (or refused at once).
        Ready(io::Result<Addrs>),
        /// A `"host:port"` string for std's resolver.
        Name(String),
        /// A host name and a port for std's resolver.
        NamePort(String, u16),
    }

    /// The addresses a value resolves to, in order: one without an
    /// allocation, or many.
    #[doc(hidden)]
    #[derive(Debug)]
    pub enum Addrs {
        /// Exactly one address.
        One(option::IntoIter<SocketAddr>),
        /// Any number.
        Many(vec::IntoIter<SocketAddr>),
    }

    impl Iterator for Addrs {
        type Item = SocketAddr;

        fn next(&mut self) -> Option<SocketAddr> {
            match self {
                Addrs::One(it) => it.next(),
                Addrs::Many(it) => it.next(),
            }
        }

        fn size_hint(&self) -> (usize, Option<usize>) {
            match self {
                Addrs::One(it) => it.size_hint(),
                Addrs::Many(it) => it.size_hint(),
            }
        }
    }
}

use sealed::{Addrs, Internal, Resolve, ToSocketAddrsPriv};

/// Resolves `host` to its socket addresses, as `tokio::net::lookup_host`.
///
/// An address, or an IP literal with a port, resolves at once. A host name
/// (`"localhost:80"`, `("example.com", 443)`) is resolved by the system's
/// resolver (`getaddrinfo(3)`, which reads `/etc/hosts` and asks DNS) on the
/// runtime's blocking pool, so the workers go on running tasks meanwhile.
/// Outside a runtime (or with the io crate used without the executor) the
/// lookup runs on a thread started for it. Dropping the future stops the
/// wait, not the lookup: that thread finishes it and the answer is dropped.
///
/// # Errors
///
/// A string that is not `host:port` (`InvalidInput`), a name that does not
/// resolve (the resolver's error), or a lookup that never finished (its
/// runtime shut down).
///
/// # Examples
///
/// ```
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use bulwark::net::lookup_host;
///
/// let addrs: Vec<_> = lookup_host("localhost:8080").await?.collect();
/// assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
///
/// let mut ip = lookup_host("127.0.0.1:53").await?;
/// assert_eq!(ip.next(), Some("127.0.0.1:53".parse().unwrap()));
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub async fn lookup_host<T: ToSocketAddrs>(
    host: T,
) -> io::Result<impl Iterator<Item = SocketAddr>> {
    resolve(&host, Location::caller()).await
}

/// Resolves `addr` for a socket made at `site`: decides now whether a lookup
/// is needed (so the future borrows nothing of `addr`), and looks up on the
/// blocking pool once polled.
pub(crate) fn resolve<A: ToSocketAddrs + ?Sized>(
    addr: &A,
    site: &'static Location<'static>,
) -> impl Future<Output = io::Result<Addrs>> + Send + 'static {
    let how = addr.to_resolve(Internal(()));
    async move {
        match how {
            Resolve::Ready(addrs) => addrs,
            Resolve::Name(name) => {
                crate::blocking::run(site, move || {
                    std::net::ToSocketAddrs::to_socket_addrs(name.as_str()).map(many)
                })
                .await?
            }
            Resolve::NamePort(host, port) => {
                crate::blocking::run(site, move || {
                    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map(many)
                })
                .await?
            }
        }
    }
}

fn one(addr: SocketAddr) -> Resolve {
    Resolve::Ready(Ok(Addrs::One(Some(addr).into_iter())))
}

fn many(addrs: impl Iterator<Item = SocketAddr>) -> Addrs {
    Addrs::Many(addrs.collect::<Vec<_>>().into_iter())
}

impl ToSocketAddrs for SocketAddr {}
impl ToSocketAddrsPriv for SocketAddr {
    fn to_resolve(&self, _: Internal) -> Resolve {
        one(*self)
    }
}

impl ToSocketAddrs for SocketAddrV4 {}
impl ToSocketAddrsPriv for SocketAddrV4 {
    fn to_resolve(&self, _: Internal) -> Resolve {
        one(SocketAddr::V4(*self))
    }
}

impl ToSocketAddrs for SocketAddrV6 {}
impl ToSocketAddrsPriv for SocketAddrV6 {
    fn to_resolve(&self, _: Internal) -> Resolve {
        one(SocketAddr::V6(*self))
    }
}

impl ToSocketAddrs for (IpAddr, u16) {}
impl ToSocketAddrsPriv for (IpAddr, u16) {
    fn to_resolve(&self, _: Internal) -> Resolve {
        one(SocketAddr::new(self.0, self.1))
    }
}

impl ToSocketAddrs for (Ipv4Addr, u16) {}
impl ToSocketAddrsPriv for (Ipv4Addr, u16) {
    fn to_resolve(&self, _: Internal) -> Resolve {
        one(SocketAddr::new(IpAddr::V4(self.0), self.1))
    }
}

impl ToSocketAddrs for (Ipv6Addr, u16) {}
impl ToSocketAddrsPriv for (Ipv6Addr, u16) {
    fn to_resolve(&self, _: Internal) -> Resolve {
        one(SocketAddr::new(IpAddr::V6(self.0), self.1))
    }
}

impl ToSocketAddrs for &[SocketAddr] {}
impl ToSocketAddrsPriv for &[SocketAddr] {
    fn to_resolve(&self, _: Internal) -> Resolve {
        Resolve::Ready(Ok(many(self.iter().copied())))
    }
}

impl ToSocketAddrs for str {}
impl ToSocketAddrsPriv for str {
    fn to_resolve(&self, _: Internal) -> Resolve {
        // `"1.2.3.4:80"` and `"[::1]:80"`: no lookup, as std does first too.
        match self.parse::<SocketAddr>() {
            Ok(addr) => one(addr),
            Err(_) => Resolve::Name(self.to_owned()),
        }
    }
}

impl ToSocketAddrs for String {}
impl ToSocketAddrsPriv for String {
    fn to_resolve(&self, internal: Internal) -> Resolve {
        self.as_str().to_resolve(internal)
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl ToSocketAddrsPriv for (&str, u16) {
    fn to_resolve(&self, _: Internal) -> Resolve {
        let (host, port) = *self;
        // An IP host needs no lookup (std parses it first too).
        match host.parse::<IpAddr>() {
            Ok(ip) => one(SocketAddr::new(ip, port)),
            Err(_) => Resolve::NamePort(host.to_owned(), port),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl ToSocketAddrsPriv for (String, u16) {
    fn to_resolve(&self, internal: Internal) -> Resolve {
        (self.0.as_str(), self.1).to_resolve(internal)
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrsPriv + ?Sized> ToSocketAddrsPriv for &T {
    fn to_resolve(&self, internal: Internal) -> Resolve {
        (**self).to_resolve(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(addr: &(impl ToSocketAddrs + ?Sized)) -> Vec<SocketAddr> {
        match addr.to_resolve(Internal(())) {
            Resolve::Ready(addrs) => addrs.expect("resolves").collect(),
            other => panic!("expected an address at once, got {other:?}"),
        }
    }

    fn needs_lookup(addr: &(impl ToSocketAddrs + ?Sized)) -> bool {
        !matches!(addr.to_resolve(Internal(())), Resolve::Ready(_))
    }

    #[test]
    fn addresses_and_ip_literals_resolve_at_once() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(ready(&v4), [v4]);
        assert_eq!(ready("127.0.0.1:80"), [v4]);
        assert_eq!(ready(&"[::1]:443".to_string()), [v6]);
        assert_eq!(ready(&("127.0.0.1", 80)), [v4]);
        assert_eq!(ready(&("::1".to_string(), 443)), [v6]);
        assert_eq!(ready(&(Ipv4Addr::LOCALHOST, 80)), [v4]);
        assert_eq!(ready(&(Ipv6Addr::LOCALHOST, 443)), [v6]);
        assert_eq!(ready(&(IpAddr::V4(Ipv4Addr::LOCALHOST), 80)), [v4]);
        assert_eq!(ready(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80)), [v4]);
        assert_eq!(
            ready(&SocketAddrV6::new(Ipv6Addr::LOCALHOST, 443, 0, 0)),
            [v6]
        );
        assert_eq!(ready(&&[v4, v6][..]), [v4, v6]);
        assert_eq!(ready(&&&v4), [v4]);
    }

    #[test]
    fn host_names_are_looked_up() {
        assert!(needs_lookup("localhost:80"));
        assert!(needs_lookup(&("localhost", 80)));
        assert!(needs_lookup(&("example.invalid".to_string(), 80)));
        // Not an address either: std's resolver gives the error.
        assert!(needs_lookup("no port here"));
    }

    #[test]
    fn a_name_resolves_off_the_calling_thread() {
        let rt = crate::test_rt::Rt::new();
        let addrs: Vec<_> = rt
            .block_on(lookup_host("localhost:80"))
            .expect("localhost resolves")
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        let err = rt.block_on(lookup_host("localhost")).map(|_| ());
        assert_eq!(
            err.expect_err("no port").kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
