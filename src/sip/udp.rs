//! The SIP UDP sockets (with the receive buffer asked for) and a request's source address.

use super::*;

/// A SIP UDP socket bound to `addr`, its receive buffer asked at `buffer` bytes (0: the
/// kernel's default). The kernel's default (208 KiB on Linux) holds ~48 datagrams on
/// loopback (each charged 2-4 KiB): a burst of INVITEs longer than that while the SIP
/// thread is busy is dropped, and each phone waits 0.5 s to retransmit (1,000 INVITEs at
/// once: 293 answered at once with the default, 333 with 416 KiB, all 1,000 with 8 MiB).
/// What the kernel kept (it caps the request at `net.core.rmem_max`) is logged.
pub(super) fn udp_socket(
    addr: SocketAddr,
    buffer: usize,
) -> std::io::Result<tokio::net::UdpSocket> {
    use std::os::fd::AsRawFd;
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    if buffer > 0 {
        let fd = socket.as_raw_fd();
        let asked = libc::c_int::try_from(buffer).unwrap_or(libc::c_int::MAX);
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SO_RCVBUFFORCE passes `net.core.rmem_max` where the process may (CAP_NET_ADMIN,
        // as root), as wireguard-go does; else SO_RCVBUF, which the kernel caps.
        let set = |option: libc::c_int| {
            // SAFETY: `fd` is this socket's, open for the call; the option value is a
            // c_int whose size is passed with it.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    option,
                    (&asked as *const libc::c_int).cast(),
                    len,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE) != 0 && set(libc::SO_RCVBUF) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut got: libc::c_int = 0;
        let mut got_len = len;
        // SAFETY: as above; `got` and `got_len` are valid for the kernel to write.
        let read = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut got as *mut libc::c_int).cast(),
                &mut got_len,
            )
        };
        // Linux keeps twice what is asked (half of it for its bookkeeping), at most twice
        // `net.core.rmem_max`, and reports what it keeps (`ss -uam` shows it as `rb`).
        let kept = if read == 0 { got as usize } else { 0 };
        if kept < 2 * buffer {
            warn!(
                %addr,
                asked_kib = buffer / 1024,
                kept_kib = kept / 1024,
                "SIP UDP receive buffer capped by the kernel's net.core.rmem_max (sysctl -w net.core.rmem_max=BYTES raises it; [sip] udp_receive_buffer_kib)"
            );
        } else {
            info!(%addr, kib = kept / 1024, "SIP UDP receive buffer");
        }
    }
    tokio::net::UdpSocket::from_std(socket)
}

/// Where a request came from; an IPv4 caller reaching an IPv6 `[::]` listener as itself
/// (its IPv4-mapped address, `::ffff:a.b.c.d`, as an IPv4 address).
pub(super) fn source_of(tx: &Transaction) -> Option<SocketAddr> {
    tx.connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
}
