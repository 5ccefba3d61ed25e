//! A TCP relay that reaches gitgate from a chosen loopback source address (127.0.0.2,
//! 127.0.0.3, …), the way a sandbox with its own address would: git and curl cannot
//! choose their source address themselves.

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Relays connections to `target` from `source`; stops when dropped.
pub struct Relay {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(source: IpAddr, target: SocketAddr) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("relay runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let accepting = async {
                    loop {
                        let Ok((mut client, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(async move {
                            let socket = TcpSocket::new_v4().expect("socket");
                            socket
                                .bind(SocketAddr::new(source, 0))
                                .expect("bind source");
                            if let Ok(mut upstream) = socket.connect(target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    () = accepting => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr: addr_rx.recv().expect("relay address"),
            _stop: stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let (stop, _) = tokio::sync::oneshot::channel();
        drop(std::mem::replace(&mut self._stop, stop));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
