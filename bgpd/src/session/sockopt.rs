//! Socket options BGP sessions need: TCP-MD5 (RFC 2385), GTSM (RFC 5082) and multihop TTL, with typed errors.
//!
//! socket2 covers IP_TTL and IPV6_UNICAST_HOPS; TCP_MD5SIG, IP_MINTTL and IPV6_MINHOPCOUNT have no safe wrapper in
//! socket2 or nix, so they go through [`setsockopt_bytes`], the one function here with `unsafe`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockRef;

/// `struct tcp_md5sig` from linux/tcp.h: a 128-octet sockaddr_storage, flags, prefix length, key length,
/// ifindex, then the key.
const MD5SIG_LEN: usize = 128 + 1 + 1 + 2 + 4 + MD5_MAX_KEY_LEN;
/// TCP_MD5SIG_MAXKEYLEN.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// A socket option that could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SockOptError {
    #[error("TCP-MD5 key of {0} octets exceeds the kernel's {MD5_MAX_KEY_LEN}")]
    Md5KeyTooLong(usize),
    #[error("TCP_MD5SIG for peer {peer}: {source}")]
    Md5Sig { peer: IpAddr, source: io::Error },
    #[error("{option}: {source}")]
    Option {
        option: &'static str,
        source: io::Error,
    },
}

/// Installs (`Some(key)`) or removes (`None`) the TCP-MD5 key for connections with `peer` on this socket.
/// On a listening socket this is per peer: every peer with a key gets its own call. A link-local peer's key is
/// keyed by its address alone: the kernel binds keys to an interface (TCP_MD5SIG_FLAG_IFINDEX) only for VRF
/// (L3 master) devices and refuses a plain interface with EINVAL, so the same link-local address on two
/// interfaces shares a key.
pub fn set_tcp_md5sig(
    fd: BorrowedFd<'_>,
    peer: IpAddr,
    key: Option<&[u8]>,
) -> Result<(), SockOptError> {
    let key = key.unwrap_or_default();
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(SockOptError::Md5KeyTooLong(key.len()));
    }
    let mut buf = [0u8; MD5SIG_LEN];
    match peer {
        IpAddr::V4(a) => {
            // struct sockaddr_in: family, port (unused), address.
            buf[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            buf[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            // struct sockaddr_in6: family, port, flowinfo, address, scope id (ignored by the kernel here).
            buf[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            buf[8..24].copy_from_slice(&a.octets());
        }
    }
    // tcpm_flags, tcpm_prefixlen and tcpm_ifindex stay 0: a key for exactly this address.
    buf[130..132].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    buf[136..136 + key.len()].copy_from_slice(key);
    setsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &buf)
        .map_err(|source| SockOptError::Md5Sig { peer, source })
}

/// Outgoing TTL / hop limit (multihop eBGP, or 255 for GTSM).
pub fn set_ttl(fd: BorrowedFd<'_>, ipv6: bool, ttl: u8) -> Result<(), SockOptError> {
    let sock = SockRef::from(&fd);
    if ipv6 {
        sock.set_unicast_hops_v6(u32::from(ttl))
            .map_err(|source| SockOptError::Option {
                option: "IPV6_UNICAST_HOPS",
                source,
            })
    } else {
        sock.set_ttl_v4(u32::from(ttl))
            .map_err(|source| SockOptError::Option {
                option: "IP_TTL",
                source,
            })
    }
}

/// Minimum TTL / hop limit of received packets (RFC 5082); the kernel drops anything below it.
pub fn set_min_ttl(fd: BorrowedFd<'_>, ipv6: bool, min: u8) -> Result<(), SockOptError> {
    let v = i32::from(min).to_ne_bytes();
    if ipv6 {
        setsockopt_bytes(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &v).map_err(|source| {
            SockOptError::Option {
                option: "IPV6_MINHOPCOUNT",
                source,
            }
        })
    } else {
        setsockopt_bytes(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &v).map_err(|source| {
            SockOptError::Option {
                option: "IP_MINTTL",
                source,
            }
        })
    }
}

/// GTSM for a peer `hops` hops away (1 for directly connected): send with TTL 255, accept only TTL >= 256 - hops.
pub fn set_gtsm(fd: BorrowedFd<'_>, ipv6: bool, hops: u8) -> Result<(), SockOptError> {
    set_ttl(fd, ipv6, 255)?;
    let min = 256u16.saturating_sub(u16::from(hops.max(1))) as u8;
    set_min_ttl(fd, ipv6, min)
}

/// setsockopt(2) with an option value given as its bytes.
#[allow(unsafe_code)]
fn setsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow; `value` is a valid, initialised buffer of
    // exactly `len` octets that the kernel only reads; the option layouts written by the callers match the kernel
    // ABI (int, or struct tcp_md5sig of MD5SIG_LEN octets, whose alignment the kernel does not require on copy-in).
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::time::Duration;

    use std::os::fd::AsFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Skips (with the reason printed) unless root; under CI a missing privilege is a failure.
    fn need_root(test: &str) -> bool {
        if is_root() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: needs root (CAP_NET_ADMIN) under CI"
        );
        eprintln!("skipping {test}: not root");
        false
    }

    const LOOPBACKS: [IpAddr; 2] = [
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ];

    /// Connects from `lo` to `listener` with the given client setup; Ok when bytes went both ways.
    async fn try_exchange(
        listener: &TcpListener,
        lo: IpAddr,
        setup: impl FnOnce(&TcpSocket),
    ) -> Result<(), String> {
        let port = listener.local_addr().unwrap().port();
        let sock = if lo.is_ipv6() {
            TcpSocket::new_v6()
        } else {
            TcpSocket::new_v4()
        }
        .unwrap();
        setup(&sock);
        let client = async {
            let mut s = sock
                .connect(SocketAddr::new(lo, port))
                .await
                .map_err(|e| e.to_string())?;
            s.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(b)
        };
        let server = async {
            let (mut s, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            s.write_all(b"pong").await.map_err(|e| e.to_string())?;
            Ok::<_, String>(b)
        };
        match tokio::time::timeout(Duration::from_secs(3), async {
            tokio::try_join!(client, server)
        })
        .await
        {
            Ok(Ok((c, s))) => {
                assert_eq!((&c, &s), (b"pong", b"ping"));
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn listen(lo: IpAddr) -> TcpListener {
        TcpListener::bind(SocketAddr::new(lo, 0)).await.unwrap()
    }

    #[tokio::test]
    async fn md5_matching_keys_connect() {
        if !need_root("md5_matching_keys_connect") {
            return;
        }
        for lo in LOOPBACKS {
            let l = listen(lo).await;
            set_tcp_md5sig(l.as_fd(), lo, Some(b"fairlead-secret")).unwrap();
            let r = try_exchange(&l, lo, |s| {
                set_tcp_md5sig(s.as_fd(), lo, Some(b"fairlead-secret")).unwrap()
            });
            assert_eq!(r.await, Ok(()), "{lo}");
        }
    }

    #[tokio::test]
    async fn md5_mismatched_or_missing_key_is_refused() {
        if !need_root("md5_mismatched_or_missing_key_is_refused") {
            return;
        }
        for lo in LOOPBACKS {
            let l = listen(lo).await;
            set_tcp_md5sig(l.as_fd(), lo, Some(b"right")).unwrap();
            let r = try_exchange(&l, lo, |s| {
                set_tcp_md5sig(s.as_fd(), lo, Some(b"wrong")).unwrap()
            });
            assert!(r.await.is_err(), "{lo}: mismatched keys connected");
            let r = try_exchange(&l, lo, |_| {});
            assert!(
                r.await.is_err(),
                "{lo}: unsigned SYN connected to a keyed listener"
            );
            // Removing the key on the listener lets unsigned connections in again.
            set_tcp_md5sig(l.as_fd(), lo, None).unwrap();
            assert_eq!(try_exchange(&l, lo, |_| {}).await, Ok(()), "{lo}");
        }
    }

    #[test]
    fn md5_key_too_long_is_a_typed_error() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = set_tcp_md5sig(s.as_fd(), IpAddr::V4(Ipv4Addr::LOCALHOST), Some(&[7u8; 81]))
            .unwrap_err();
        assert!(matches!(e, SockOptError::Md5KeyTooLong(81)), "{e}");
    }

    #[tokio::test]
    async fn gtsm_accepts_ttl_255_and_drops_lower() {
        for lo in LOOPBACKS {
            let ipv6 = lo.is_ipv6();
            let l = listen(lo).await;
            set_gtsm(l.as_fd(), ipv6, 1).unwrap();
            let r = try_exchange(&l, lo, |s| set_gtsm(s.as_fd(), ipv6, 1).unwrap());
            assert_eq!(r.await, Ok(()), "{lo}: GTSM peer refused");
            let r = try_exchange(&l, lo, |s| set_ttl(s.as_fd(), ipv6, 64).unwrap());
            assert!(r.await.is_err(), "{lo}: TTL 64 accepted by a GTSM listener");
        }
    }

    #[test]
    fn ttl_reads_back() {
        let s4 = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_ttl(s4.as_fd(), false, 5).unwrap();
        assert_eq!(s4.ttl_v4().unwrap(), 5);
        let s6 = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        set_gtsm(s6.as_fd(), true, 1).unwrap();
        assert_eq!(s6.unicast_hops_v6().unwrap(), 255);
    }
}
