//! The socket of one connection, plain TCP or TLS (RFC 8446, RFC 5246), as
//! every layer above sees it: `Read` and `Write` through a shared reference,
//! so that the threads of one connection (a reader, a writer, the shutdown)
//! share it the way they share a `TcpStream` (see `crate::io::transport`).
//!
//! A plain socket is a `TcpStream` and costs nothing more: no allocation, no
//! lock; every call goes straight to the stream. A TLS socket (feature
//! `tls`, `crate::io::tls`) adds its session behind a box; what it changes
//! for writers is documented on [`Socket::output_pending`].

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

#[cfg(feature = "tls")]
use super::tls::Session;

/// One connection's socket.
#[derive(Debug)]
pub struct Socket {
    tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Box<Session>>,
}

impl From<TcpStream> for Socket {
    fn from(tcp: TcpStream) -> Socket {
        Socket::plain(tcp)
    }
}

impl Socket {
    /// A plain TCP socket.
    pub fn plain(tcp: TcpStream) -> Socket {
        Socket {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A TLS socket whose handshake is over.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(tcp: TcpStream, session: Session) -> Socket {
        Socket {
            tcp,
            tls: Some(Box::new(session)),
        }
    }

    /// Whether the connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        false
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// How long a read may wait (`None`: for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// How long a write may wait (`None`: for ever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(timeout)
    }

    /// Shut the connection down. A TLS socket whose write side closes first
    /// sends its close_notify alert (RFC 8446 6.1), if that can be done
    /// without blocking; `Shutdown::Both` is the forced end, which only
    /// wakes the threads blocked on the socket.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        // RFC 8446 6.1: "Each party MUST send a "close_notify" alert before
        // closing its write side of the connection".
        #[cfg(feature = "tls")]
        if let (Some(tls), Shutdown::Write) = (&self.tls, how) {
            tls.close_notify(&self.tcp);
        }
        self.tcp.shutdown(how)
    }

    /// Write `parts` without blocking; returns how many of their bytes the
    /// socket took (0 when it could take none now). See
    /// [`Socket::output_pending`] for what "took" means with TLS.
    pub fn write_without_blocking(&self, parts: &[&[u8]]) -> usize {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.write_without_blocking(&self.tcp, parts);
        }
        if self.tcp.set_nonblocking(true).is_err() {
            return 0;
        }
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
        let written = (&self.tcp).write_vectored(&slices).unwrap_or(0);
        if self.tcp.set_nonblocking(false).is_err() {
            // The connection's threads would spin on WouldBlock: end the
            // connection instead (it wakes them).
            let _ = self.tcp.shutdown(Shutdown::Both);
        }
        written
    }

    /// Whether bytes the socket took are still waiting to go out: never for
    /// plain TCP, whose kernel buffer is the only one. A TLS socket takes
    /// plaintext by encrypting it (at most 64 KiB of it per write, rustls'
    /// buffer limit), then hands the records to the kernel; what the kernel
    /// did not take waits in the socket, bounded by that limit, until the
    /// next write or [`Write::flush`] sends it. So after a write that did
    /// not block, pending output means someone must flush it; after a
    /// blocking write, `flush` does.
    pub fn output_pending(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.output_pending();
        }
        false
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.read(&self.tcp, buf);
        }
        (&self.tcp).read(buf)
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.write_vectored(&self.tcp, bufs);
        }
        (&self.tcp).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.flush(&self.tcp);
        }
        Ok(())
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}
