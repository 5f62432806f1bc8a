//! One connection to the endpoint: read a request head (at most
//! [`MAX_HEAD`](super::request::MAX_HEAD) bytes), write one response, then
//! linger a moment reading and discarding what the client still sends, so
//! that closing does not reset the connection under a response the client
//! has not read yet.
//!
//! All IO is non-blocking: each step reads or writes until the socket would
//! block and returns, and the endpoint's loop calls it again on the next
//! event. A connection lives at most its deadline (2 s to send the request,
//! then 5 s to take the response), which the loop enforces.

use super::request::{Parsed, Reader};
use super::routes::Response;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// Time a client has, from the accept, to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Time a client has to take its response once it is ready.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Time spent after the response reading what the client still sends, so
/// that the close is a FIN, not a reset that could destroy the response.
const LINGER: Duration = Duration::from_millis(500);

/// The most bytes read and thrown away while lingering.
const LINGER_BYTES: usize = 4 << 20;

/// Where a connection is.
#[derive(Debug)]
pub enum State {
    /// Gathering the request head.
    Reading(Reader),
    /// Sending the response: the bytes and how many went.
    Writing(Vec<u8>, usize),
    /// Answered; waiting for the client's close (or the linger's end).
    Lingering(usize),
}

/// What the loop does next with a connection.
#[derive(Debug)]
pub enum Step {
    /// Nothing until the socket is ready again.
    Wait,
    /// A whole request head came: route it.
    Request(super::request::Request),
    /// Answer this (a malformed or oversized request) and close.
    Respond(Response),
    /// Close now.
    Close,
    /// The response went out.
    Written,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket (registered with the endpoint's poll).
    pub stream: TcpStream,
    /// Where it is.
    pub state: State,
    /// When it was accepted: the oldest goes first when room is needed.
    pub accepted: Instant,
    /// When the loop closes it, whatever it is doing.
    pub deadline: Instant,
}

fn is_retry(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

fn is_wait(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Conn {
    /// A connection accepted `now`.
    pub fn new(stream: TcpStream, now: Instant) -> Conn {
        Conn {
            stream,
            state: State::Reading(Reader::default()),
            accepted: now,
            deadline: now + READ_TIMEOUT,
        }
    }

    /// Which connection goes first when room is needed: one that has its
    /// answer already, then one still sending its request, then one taking
    /// its response.
    pub fn eviction_rank(&self) -> u8 {
        match self.state {
            State::Lingering(_) => 0,
            State::Reading(_) => 1,
            State::Writing(..) => 2,
        }
    }

    /// Reads until the socket would block or a head is complete.
    pub fn read_request(&mut self) -> Step {
        let State::Reading(reader) = &mut self.state else {
            return Step::Wait;
        };
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) if reader.is_empty() => return Step::Close,
                Ok(0) => {
                    return Step::Respond(Response::text(
                        400,
                        "the connection was closed before the request head ended",
                    ))
                }
                Ok(n) => match reader.push(&buf[..n]) {
                    Parsed::Partial => {}
                    Parsed::Complete(req) => return Step::Request(req),
                    Parsed::Bad(status, why) => return Step::Respond(Response::text(status, why)),
                },
                Err(e) if is_retry(&e) => {}
                Err(e) if is_wait(&e) => return Step::Wait,
                Err(_) => return Step::Close,
            }
        }
    }

    /// Starts sending `bytes`; the client has [`WRITE_TIMEOUT`] from `now`.
    pub fn start_write(&mut self, bytes: Vec<u8>, now: Instant) {
        self.state = State::Writing(bytes, 0);
        self.deadline = now + WRITE_TIMEOUT;
    }

    /// Writes until the socket would block or the response is out.
    pub fn write(&mut self) -> Step {
        let State::Writing(bytes, sent) = &mut self.state else {
            return Step::Wait;
        };
        while *sent < bytes.len() {
            match self.stream.write(&bytes[*sent..]) {
                Ok(0) => return Step::Close,
                Ok(n) => *sent += n,
                Err(e) if is_retry(&e) => {}
                Err(e) if is_wait(&e) => return Step::Wait,
                Err(_) => return Step::Close,
            }
        }
        Step::Written
    }

    /// The response is out: half-close and linger.
    pub fn finish(&mut self, now: Instant) {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.state = State::Lingering(0);
        self.deadline = now + LINGER;
    }

    /// Reads and discards until the client closes (then [`Step::Close`]) or
    /// the socket would block.
    pub fn linger(&mut self) -> Step {
        let State::Lingering(drained) = &mut self.state else {
            return Step::Wait;
        };
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    *drained += n;
                    if *drained > LINGER_BYTES {
                        return Step::Close;
                    }
                }
                Err(e) if is_retry(&e) => {}
                Err(e) if is_wait(&e) => return Step::Wait,
                Err(_) => return Step::Close,
            }
        }
    }

    /// Tries once, without waiting, to tell a client that took too long
    /// to send its request (408); the connection is closed next anyway.
    pub fn tell_timeout(&mut self) {
        if matches!(self.state, State::Reading(_)) {
            let r = Response::text(408, "the request head took longer than 2 s");
            let _ = self.stream.write(&r.to_bytes(false));
        }
    }
}
