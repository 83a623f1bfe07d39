//! The shape every async host function shares. A host function first reads and checks its
//! arguments while it holds the Store (sync: pointers, grants), then runs its backend call as an
//! owned future that borrows nothing of the Store, then writes the answer back; all of it in the
//! call's `host.<name>` span.
//!
//! Output buffers: an answer larger than the guest's buffer is kept, with the inputs that asked
//! for it, until the guest's next data call. If that call is the retry (same function, same
//! inputs) it gets the kept answer without running again, so a retried fetch, enqueue or
//! `INSERT ... RETURNING` happens once, and a retried list sees the same snapshot.

use super::{HostError, HostView, Waits, finish, memory};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use tracing::Instrument;
use wasmtime::{Caller, Linker, WasmTyList};

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, HostError>> + Send>>;

/// What a host function does once its arguments are read and checked.
pub(super) enum Work {
    /// Return the value the future yields.
    Value(Pending<i64>),
    /// Write the bytes the future yields into the guest buffer `out_ptr..out_ptr+out_cap`.
    Data { out_ptr: i32, out_cap: i32, inputs: Vec<Bytes>, answer: Pending<Bytes> },
}

impl Work {
    pub(super) fn value(future: impl Future<Output = Result<i64, HostError>> + Send + 'static) -> Self {
        Self::Value(Box::pin(future))
    }

    /// `inputs` are the argument bytes that determine the answer, to recognise the retry.
    pub(super) fn data(
        (out_ptr, out_cap): (i32, i32),
        inputs: Vec<Bytes>,
        answer: impl Future<Output = Result<Bytes, HostError>> + Send + 'static,
    ) -> Self {
        Self::Data { out_ptr, out_cap, inputs, answer: Box::pin(answer) }
    }
}

/// An answer that did not fit, waiting for its retry.
pub(super) struct Held {
    function: &'static str,
    inputs: Vec<Bytes>,
    answer: Bytes,
}

/// Reads a host function's arguments and checks them; runs with the Store borrowed.
pub(super) type Read<T, P> = fn(&mut Caller<'_, T>, P) -> Result<Work, HostError>;

/// Links `name` as an async host function made of `read` and the [`Work`] it returns.
pub(super) fn link_async<T, P>(
    linker: &mut Linker<T>,
    name: &'static str,
    waits: Waits,
    read: Read<T, P>,
) -> wasmtime::Result<()>
where
    T: HostView,
    P: WasmTyList + Send + 'static,
{
    linker.func_wrap_async(super::MODULE, name, move |mut caller: Caller<'_, T>, params: P| {
        let span = caller.data_mut().host().span(name);
        let call = async move {
            caller.data_mut().host().count(name);
            let result = match read(&mut caller, params) {
                Ok(work) => {
                    caller.data_mut().host().awaiting = Some((name, waits));
                    let result = run(&mut caller, name, work).await;
                    caller.data_mut().host().awaiting = None;
                    result
                }
                Err(error) => Err(error),
            };
            finish(&mut caller, result)
        };
        Box::new(call.instrument(span))
    })?;
    Ok(())
}

async fn run<T: HostView>(
    caller: &mut Caller<'_, T>,
    name: &'static str,
    work: Work,
) -> Result<i64, HostError> {
    let (out_ptr, out_cap, inputs, answer) = match work {
        Work::Value(value) => return value.await,
        Work::Data { out_ptr, out_cap, inputs, answer } => (out_ptr, out_cap, inputs, answer),
    };
    let held = caller.data_mut().host().held.take();
    let answer = match held {
        Some(held) if held.function == name && held.inputs == inputs => held.answer,
        _ => answer.await?,
    };
    let length = memory::write_out(caller, out_ptr, out_cap, &answer)?;
    if answer.len() > out_cap as u32 as usize {
        caller.data_mut().host().held = Some(Held { function: name, inputs, answer });
    }
    Ok(length)
}
