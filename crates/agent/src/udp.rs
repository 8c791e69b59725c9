//! UDP sockets for syslog: a large receive buffer, and the kernel's count of datagrams it
//! dropped because that buffer was full (from `/proc/net/udp` and `/proc/net/udp6`).

/// Receive buffer asked for syslog UDP sockets: bursts wait in the kernel instead of being
/// dropped (the kernel caps it at `net.core.rmem_max`).
const UDP_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// A UDP socket bound to `addr` with a large receive buffer.
pub async fn bind_udp(addr: &str) -> std::io::Result<tokio::net::UdpSocket> {
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a smaller buffer still works, it only drops sooner.
        let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
        socket.set_nonblocking(true)?;
        match socket.bind(&sa.into()) {
            Ok(()) => return tokio::net::UdpSocket::from_std(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("address resolves to nothing")))
}

/// Datagrams the kernel dropped on `socket` (receive buffer full); `None` where the kernel
/// tables are not available.
pub fn kernel_udp_drops(socket: &tokio::net::UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
        .ok()?
        .ino();
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            drops_of_inode(&text, inode)
        })
}

/// The `drops` column of the row of socket `inode` in a `/proc/net/udp` table.
fn drops_of_inode(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let mut cols = row.split_whitespace();
        // sl local rem st queues tr retrnsmt uid timeout inode ref pointer drops
        let ino: u64 = cols.nth(9)?.parse().ok()?;
        if ino != inode {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn drops_are_read_from_the_row_of_the_socket() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:1586 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 44001 2 0000000000000000 0
  124: 0100007F:1587 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 44002 2 0000000000000000 17
";
        assert_eq!(super::drops_of_inode(table, 44002), Some(17));
        assert_eq!(super::drops_of_inode(table, 44001), Some(0));
        assert_eq!(super::drops_of_inode(table, 9), None);
        assert_eq!(super::drops_of_inode("garbage\nrow", 9), None);
    }
}
