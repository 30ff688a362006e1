//! Many UDP sockets read from one thread once per 20 ms tick, without a task per socket: an
//! epoll set asked (without waiting) which sockets hold packets, and `recvmmsg` reading each
//! one's queue in one system call. A sender to a socket nobody is waiting on pays no wake-up,
//! and a packet costs its receiver one system call shared with the packets queued beside it.
//!
//! Linux only (epoll, recvmmsg), as the gateway is.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Socket readiness for one thread: which of its sockets have packets queued.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// A poller reporting up to `batch` ready sockets per call of [`Poller::ready`].
    pub fn new(batch: usize) -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // this value then owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Poller {
            // SAFETY: `fd` was just returned by epoll_create1 and is owned by nothing else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)],
        })
    }

    /// Watches `socket` for packets (level-triggered), reported as `token`.
    pub fn add(&self, socket: &UdpSocket, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open (borrowed for the call); `ev` is a valid event.
        let r = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                socket.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching a socket (closing it also does).
    fn remove_fd(&self, fd: std::os::fd::RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `epoll` is open and `fd` is an open descriptor (callers hold its owner); a
        // descriptor not in the set only makes the call fail.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// The tokens of sockets holding packets now, up to the batch size; does not wait. A
    /// full batch means there may be more: read these, then ask again.
    pub fn ready(&mut self) -> impl Iterator<Item = u64> + '_ {
        // SAFETY: `events` is a live buffer of `len` entries the kernel fills.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                0,
            )
        };
        let n = n.max(0) as usize;
        self.events[..n].iter().map(|e| e.u64)
    }

    /// The most tokens one [`Poller::ready`] returns.
    pub fn batch(&self) -> usize {
        self.events.len()
    }
}

/// What one media thread serves (the gateway's calls, the generator's phones): kept in a fixed
/// order, their sockets watched by one epoll set, an item's slot being its token.
pub struct SocketSet<T> {
    poller: Poller,
    /// Each item with its socket's descriptor (open while the item is held here).
    items: Vec<Option<(std::sync::Arc<T>, std::os::fd::RawFd)>>,
    free: Vec<usize>,
    ready: Vec<u64>,
}

impl<T> SocketSet<T> {
    pub fn new() -> io::Result<SocketSet<T>> {
        Ok(SocketSet {
            poller: Poller::new(256)?,
            items: Vec::new(),
            free: Vec::new(),
            ready: Vec::new(),
        })
    }

    /// Adds `item`, whose socket (owned by the item) is `socket`. The item is kept even when
    /// the socket cannot be watched (then it is only never reported ready).
    pub fn insert(&mut self, item: std::sync::Arc<T>, socket: &UdpSocket) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.items.push(None);
            self.items.len() - 1
        });
        let watched = self.poller.add(socket, slot as u64);
        self.items[slot] = Some((item, socket.as_raw_fd()));
        watched
    }

    /// Calls `f` with every item whose socket holds packets now (without waiting).
    pub fn for_each_ready(&mut self, mut f: impl FnMut(&std::sync::Arc<T>)) {
        for _ in 0..64 {
            self.ready.clear();
            self.ready.extend(self.poller.ready());
            for &token in &self.ready {
                if let Some(Some((item, _))) = self.items.get(token as usize) {
                    f(item);
                }
            }
            if self.ready.len() < self.poller.batch() {
                break;
            }
        }
    }

    /// Calls `f` with every item in the set's order; an item for which it returns false is
    /// dropped (and its socket no longer watched).
    pub fn retain(&mut self, mut f: impl FnMut(&std::sync::Arc<T>) -> bool) {
        for (slot, entry) in self.items.iter_mut().enumerate() {
            let Some((item, fd)) = entry else { continue };
            if !f(item) {
                self.poller.remove_fd(*fd);
                *entry = None;
                self.free.push(slot);
            }
        }
    }
}

/// Asks the kernel to stamp every packet `socket` receives with its arrival time (read with
/// [`RecvBatch::arrival`]): a receiver busy elsewhere still learns when each packet came.
pub fn enable_timestamps(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the socket is open; the option value is a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Room for one control message (a timestamp), aligned as cmsghdr needs.
type Control = [u64; 8];

/// Packets read from one socket in one system call.
pub struct RecvBatch<const N: usize, const SIZE: usize> {
    bufs: Box<[[u8; SIZE]; N]>,
    addrs: [MaybeUninit<libc::sockaddr_storage>; N],
    control: [Control; N],
    lens: [usize; N],
    /// Arrival times (since the Unix epoch) of sockets with timestamps enabled.
    arrivals: [Option<std::time::Duration>; N],
    count: usize,
}

impl<const N: usize, const SIZE: usize> Default for RecvBatch<N, SIZE> {
    fn default() -> Self {
        RecvBatch {
            bufs: Box::new([[0; SIZE]; N]),
            addrs: [MaybeUninit::zeroed(); N],
            control: [[0; 8]; N],
            lens: [0; N],
            arrivals: [None; N],
            count: 0,
        }
    }
}

impl<const N: usize, const SIZE: usize> std::fmt::Debug for RecvBatch<N, SIZE> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<const N: usize, const SIZE: usize> RecvBatch<N, SIZE> {
    /// Reads up to `N` queued packets of `socket` without waiting; returns how many (0 when
    /// none is queued). Longer packets are truncated to `SIZE` bytes.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        let mut iov: [libc::iovec; N] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.bufs[i].as_mut_ptr().cast(),
            iov_len: SIZE,
        });
        // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; N] = unsafe { std::mem::zeroed() };
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = self.addrs[i].as_mut_ptr().cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            m.msg_hdr.msg_iov = &mut iov[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = self.control[i].as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = std::mem::size_of::<Control>() as _;
        }
        // SAFETY: every pointer in `msgs` points into `self.bufs`, `self.addrs`,
        // `self.control` or `iov`,
        // all alive and not otherwise borrowed for the duration of the call, with the sizes
        // given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                N as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for (i, m) in msgs[..n].iter().enumerate() {
            self.lens[i] = (m.msg_len as usize).min(SIZE);
            if m.msg_hdr.msg_namelen == 0 {
                // No source address: mark it so `packet` reports none.
                // SAFETY: writing a family field of a zeroable struct we own.
                unsafe { (*self.addrs[i].as_mut_ptr()).ss_family = libc::AF_UNSPEC as u16 };
            }
            self.arrivals[i] = None;
            // SAFETY: the kernel filled `msg_controllen` bytes of this message's control
            // buffer (still alive) with well-formed cmsghdrs; the CMSG macros stay within it.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        self.arrivals[i] = Some(std::time::Duration::new(
                            ts.tv_sec as u64,
                            ts.tv_nsec as u32,
                        ));
                    }
                    c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
                }
            }
        }
        self.count = n;
        Ok(n)
    }

    /// Packet `i` of the last read and where it came from.
    pub fn packet(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        debug_assert!(i < self.count);
        // SAFETY: entries start zeroed and are only written by the kernel or `recv`; every
        // bit pattern of sockaddr_storage is valid.
        let storage = unsafe { self.addrs[i].assume_init_ref() };
        (&self.bufs[i][..self.lens[i]], socket_addr(storage))
    }
}

impl<const N: usize, const SIZE: usize> RecvBatch<N, SIZE> {
    /// When packet `i` of the last read arrived (since the Unix epoch), if the socket has
    /// timestamps enabled ([`enable_timestamps`]).
    pub fn arrival(&self, i: usize) -> Option<std::time::Duration> {
        self.arrivals[i]
    }
}

fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is big enough
            // and aligned enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_sockets_and_batched_reads() {
        for ip in ["127.0.0.1", "::1"] {
            let a = UdpSocket::bind((ip, 0)).unwrap();
            let b = UdpSocket::bind((ip, 0)).unwrap();
            let idle = UdpSocket::bind((ip, 0)).unwrap();
            let mut poller = Poller::new(8).unwrap();
            poller.add(&b, 7).unwrap();
            poller.add(&idle, 9).unwrap();
            assert_eq!(poller.ready().count(), 0);
            for i in 0..5u8 {
                a.send_to(&[i; 20], b.local_addr().unwrap()).unwrap();
            }
            let ready: Vec<u64> = poller.ready().collect();
            assert_eq!(ready, vec![7]);
            let mut batch = RecvBatch::<4, 16>::default();
            assert_eq!(batch.recv(&b).unwrap(), 4);
            let (data, from) = batch.packet(3);
            assert_eq!(data, &[3u8; 16][..], "truncated to the buffer");
            assert_eq!(from, Some(a.local_addr().unwrap()));
            assert_eq!(batch.recv(&b).unwrap(), 1);
            assert_eq!(batch.packet(0).0, &[4u8; 16][..]);
            assert_eq!(batch.arrival(0), None, "no timestamps asked for");
            assert_eq!(batch.recv(&b).unwrap(), 0, "nothing queued: no wait");
            enable_timestamps(&b).unwrap();
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            a.send_to(&[9], b.local_addr().unwrap()).unwrap();
            assert_eq!(batch.recv(&b).unwrap(), 1);
            let at = batch.arrival(0).expect("a kernel timestamp");
            assert!(at >= before && at < before + std::time::Duration::from_secs(5));
            assert_eq!(poller.ready().count(), 0);
            poller.remove_fd(b.as_raw_fd());
            a.send_to(&[1], b.local_addr().unwrap()).unwrap();
            assert_eq!(poller.ready().count(), 0, "removed");
        }
    }

    #[test]
    fn a_socket_set_serves_in_order_and_forgets_what_it_drops() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sockets: Vec<std::sync::Arc<UdpSocket>> = (0..3)
            .map(|_| std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap()))
            .collect();
        let mut set = SocketSet::new().unwrap();
        for s in &sockets {
            set.insert(s.clone(), s).unwrap();
        }
        tx.send_to(&[1], sockets[1].local_addr().unwrap()).unwrap();
        let mut ready = Vec::new();
        set.for_each_ready(|s| ready.push(s.local_addr().unwrap()));
        assert_eq!(ready, vec![sockets[1].local_addr().unwrap()]);
        let mut order = Vec::new();
        set.retain(|s| {
            order.push(s.local_addr().unwrap());
            !std::sync::Arc::ptr_eq(s, &sockets[1])
        });
        let all: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        assert_eq!(order, all);
        // Dropped: its packets are no longer reported, and its slot is reused.
        let mut ready = 0;
        set.for_each_ready(|_| ready += 1);
        assert_eq!(ready, 0);
        let again = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        set.insert(again.clone(), &again).unwrap();
        let mut order = Vec::new();
        set.retain(|s| {
            order.push(s.local_addr().unwrap());
            true
        });
        assert_eq!(order[1], again.local_addr().unwrap());
    }
}
