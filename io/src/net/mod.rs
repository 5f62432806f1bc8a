//! Networking: TCP and UDP sockets on the driver.
