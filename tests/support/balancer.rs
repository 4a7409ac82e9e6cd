//! An L4 load balancer for tests, the way HAProxy (`send-proxy`, `send-proxy-v2`) and AWS
//! NLB (proxy protocol v2 on a target group) forward a connection: accept the client,
//! connect to the node, send a PROXY header naming a client, then copy bytes both ways
//! untouched (TLS passes through). The headers are written out here byte by byte from
//! HAProxy's proxy-protocol.txt, not by longhaul's code, and the client they name is the
//! test's choice (documentation addresses: nothing is ever sent to them).

use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The PROXY header a [`Balancer`] sends.
#[derive(Clone, Copy, Debug)]
pub enum Header {
    /// `PROXY TCP4 <client> <node> <client port> <node port>\r\n` (section 2.1).
    V1,
    /// The binary form (section 2.2) with PROXY over TCP4, and two TLVs: AWS NLB's VPC
    /// endpoint id (type 0xEA) and an authority (SNI, type 0x02), as they send them.
    V2WithTlvs,
}

/// `header`'s bytes for a connection from `client` to `node` (both IPv4).
pub fn header_bytes(header: Header, client: SocketAddr, node: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(c), SocketAddr::V4(n)) = (client, node) else {
        panic!("the test balancer speaks TCP4 only");
    };
    match header {
        Header::V1 => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            c.ip(),
            n.ip(),
            c.port(),
            n.port()
        )
        .into_bytes(),
        Header::V2WithTlvs => {
            let mut body = Vec::new();
            body.extend_from_slice(&c.ip().octets());
            body.extend_from_slice(&n.ip().octets());
            body.extend_from_slice(&c.port().to_be_bytes());
            body.extend_from_slice(&n.port().to_be_bytes());
            let vpce = b"\x01vpce-08d2bf15fac5001c9";
            body.push(0xea);
            body.extend_from_slice(&(vpce.len() as u16).to_be_bytes());
            body.extend_from_slice(vpce);
            body.push(0x02);
            body.extend_from_slice(&9u16.to_be_bytes());
            body.extend_from_slice(b"localhost");
            // Signature, version 2 + PROXY, TCP over IPv4, length.
            let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            out.extend_from_slice(&[0x21, 0x11]);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            out.extend_from_slice(&body);
            out
        }
    }
}

/// A balancer in front of one node address, telling it every client is `client`.
pub struct Balancer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    pub async fn start(node: SocketAddr, header: Header, client: SocketAddr) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(node).await else {
                        return;
                    };
                    // One write, as the spec asks of senders.
                    let bytes = header_bytes(header, client, node);
                    if outbound.write_all(&bytes).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer { addr, task }
    }

    /// `rtmp://<balancer>/...` in place of `rtmp://<node>/...`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}/{path}", self.addr)
    }
}
