//! `JoinError`: why a task gave no output.

use super::Id;
use std::any::Any;
use std::fmt;

/// A task ended without producing its output: it panicked, it was cancelled
/// (aborted, or dropped when its runtime shut down), it was dropped at its
/// deadline, admission rejected it, or it was cancelled because it was lost
/// (no waker was left to wake it, under `LostTask::Cancel`).
///
/// Its `Display` names the task (id, and name if it has one) and the reason.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let panicked = bulwark::task::Builder::new()
///         .name("parser")
///         .spawn(async { panic!("bad input") })
///         .unwrap();
///     let err = panicked.await.unwrap_err();
///     assert!(err.is_panic());
///     assert!(err.to_string().contains("\"parser\""), "{err}");
///     let payload = err.into_panic();
///     assert_eq!(payload.downcast_ref::<&str>(), Some(&"bad input"));
///
///     let aborted = bulwark::spawn(std::future::pending::<()>());
///     aborted.abort();
///     assert!(aborted.await.unwrap_err().is_cancelled());
///
///     let late = bulwark::task::Builder::new()
///         .timeout(Duration::from_millis(1))
///         .spawn(std::future::pending::<()>())
///         .unwrap();
///     let err = late.await.unwrap_err();
///     assert!(err.is_deadline_exceeded() && !err.is_cancelled());
///     assert!(err.try_into_panic().is_err(), "not a panic: the error comes back");
/// });
/// ```
pub struct JoinError {
    id: Id,
    name: Option<Box<str>>,
    repr: Repr,
}

enum Repr {
    Cancelled,
    DeadlineExceeded,
    Rejected(&'static str),
    Lost,
    Panic(Payload),
}

/// A panic payload, made `Sync` the only sound way: nothing reads it through
/// a shared reference except `downcast_ref` for `&str` and `String`, which
/// are `Sync` themselves (see `panic_message`).
struct Payload(Box<dyn Any + Send + 'static>);

// SAFETY: `&Payload` exposes the payload only through `panic_message`, which
// downcasts to `&'static str` or `String` (both `Sync`); every other access
// takes the payload by value.
unsafe impl Sync for Payload {}

impl JoinError {
    pub(crate) fn cancelled(id: Id, name: Option<&str>) -> JoinError {
        JoinError {
            id,
            name: name.map(Into::into),
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn deadline_exceeded(id: Id, name: Option<&str>) -> JoinError {
        JoinError {
            id,
            name: name.map(Into::into),
            repr: Repr::DeadlineExceeded,
        }
    }

    /// Admission refused the task: `shedding` if adaptive shedding did,
    /// else the task ceiling.
    pub(crate) fn rejected(id: Id, name: Option<&str>, shedding: bool) -> JoinError {
        let why = if shedding {
            "the runtime is shedding load (adaptive admission)"
        } else {
            "the runtime is at its task ceiling (max_tasks)"
        };
        JoinError {
            id,
            name: name.map(Into::into),
            repr: Repr::Rejected(why),
        }
    }

    /// The task was lost (idle with no waker left) and the runtime's policy
    /// cancelled it.
    pub(crate) fn lost(id: Id, name: Option<&str>) -> JoinError {
        JoinError {
            id,
            name: name.map(Into::into),
            repr: Repr::Lost,
        }
    }

    pub(crate) fn panic(id: Id, name: Option<&str>, payload: Box<dyn Any + Send>) -> JoinError {
        JoinError {
            id,
            name: name.map(Into::into),
            repr: Repr::Panic(Payload(payload)),
        }
    }

    /// True if the task was cancelled: aborted through its `JoinHandle`, or
    /// dropped at runtime shutdown.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// True if the task was dropped at its deadline (set with
    /// `task::Builder::deadline`/`timeout`, inherited from its parent, or the
    /// runtime's `default_deadline`).
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self.repr, Repr::DeadlineExceeded)
    }

    /// True if admission refused the task: the runtime was at its task
    /// ceiling, or shedding load. Its future was dropped unpolled.
    pub fn is_rejected(&self) -> bool {
        matches!(self.repr, Repr::Rejected(_))
    }

    /// True if the task was cancelled because it was *lost*: it was waiting
    /// (its last poll returned `Pending`) and every `Waker` for it had been
    /// dropped, so nothing could ever wake it again. Only with the runtime
    /// policy `LostTask::Cancel` (`runtime::Builder::on_lost_task`); its
    /// future was dropped, so what it held was released. `is_cancelled()`
    /// is false for it, as for a deadline.
    pub fn is_lost(&self) -> bool {
        matches!(self.repr, Repr::Lost)
    }

    /// True if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The panic payload.
    ///
    /// # Panics
    ///
    /// If the error is not a panic; use [`try_into_panic`](Self::try_into_panic)
    /// to check instead.
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .expect("`JoinError::into_panic` called on an error that is not a panic")
    }

    /// The panic payload, or the error back if it is not a panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p.0),
            _ => Err(self),
        }
    }

    /// The id of the task that failed.
    pub fn id(&self) -> Id {
        self.id
    }

    fn fmt_task(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.id)?;
        if let Some(name) = &self.name {
            write!(f, " ({name:?})")?;
        }
        Ok(())
    }
}

/// The message of a panic payload, if it is a string (as `panic!` makes).
fn panic_message(payload: &Payload) -> Option<&str> {
    let payload = &*payload.0;
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_task(f)?;
        match &self.repr {
            Repr::Cancelled => f.write_str(" was cancelled"),
            Repr::DeadlineExceeded => f.write_str(" was dropped at its deadline"),
            Repr::Rejected(why) => write!(f, " was rejected: {why}"),
            Repr::Lost => f.write_str(
                " was cancelled because no waker was left to wake it (a lost task: \
                 pending, and every waker for it was dropped)",
            ),
            Repr::Panic(p) => match panic_message(p) {
                Some(msg) => write!(f, " panicked with message {msg:?}"),
                None => f.write_str(" panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "JoinError::Cancelled({:?})", self.id),
            Repr::DeadlineExceeded => write!(f, "JoinError::DeadlineExceeded({:?})", self.id),
            Repr::Rejected(why) => write!(f, "JoinError::Rejected({:?}, {why:?})", self.id),
            Repr::Lost => write!(f, "JoinError::Lost({:?})", self.id),
            Repr::Panic(p) => match panic_message(p) {
                Some(msg) => write!(f, "JoinError::Panic({:?}, {msg:?}, ...)", self.id),
                None => write!(f, "JoinError::Panic({:?}, ...)", self.id),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}
