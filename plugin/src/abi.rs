//! Total wrappers over the proxy-wasm ABI (0.2.1) calls the plugin makes.
//!
//! The SDK's `hostcalls` panic on any status they do not expect and on non-UTF-8 header
//! values; a panic traps the VM. These wrappers return `Err(status)` or `None` instead, so no
//! host answer and no request byte can take the filter down. Only `dispatch_http_call` goes
//! through the SDK, which must register the callout with its context dispatcher.

#![allow(unsafe_code, clashing_extern_declarations)]

use core::ptr::{null, null_mut};

use crate::shared::encode_map;

pub const STATUS_OK: u32 = 0;
pub const STATUS_NOT_FOUND: u32 = 1;

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_add_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate` (the
/// SDK's allocator, which hands out boxed byte slices of exactly `size`).
fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into a block it obtained from our allocator for
    // exactly `size` bytes, and hands ownership to us (as the SDK itself assumes).
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length describe a live slice for the duration of the call.
    unsafe {
        proxy_log(level as u32, message.as_ptr(), message.len());
    }
}

/// Wall-clock time in milliseconds since the epoch (0 if the host will not say).
pub fn now_ms() -> u64 {
    let mut t: u64 = 0;
    // SAFETY: `t` outlives the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == STATUS_OK {
        t / 1_000_000
    } else {
        0
    }
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), u32> {
    // SAFETY: plain value call.
    let status = unsafe { proxy_set_tick_period_milliseconds(ms) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn get_buffer(buffer_type: u32, max_size: usize) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers outlive the call; the returned block is ours (see `take`).
    let status = unsafe { proxy_get_buffer_bytes(buffer_type, 0, max_size, &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(take(data, size)),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(other),
    }
}

/// All pairs of a header map, as raw bytes (values may be any octets).
/// A header map in the proxy-wasm wire format, one host call; `shared::decode_map` borrows
/// the pairs out of it.
pub fn get_header_block(map_type: u32) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    if status != STATUS_OK {
        return Err(status);
    }
    Ok(take(data, size))
}

/// Adds one header (a name the map may already hold gets a second value).
pub fn add_header(map_type: u32, name: &str, value: &str) -> Result<(), u32> {
    // SAFETY: both slices live for the call.
    let status = unsafe { proxy_add_header_map_value(map_type, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Removes every value of one header.
pub fn remove_header(map_type: u32, name: &[u8]) -> Result<(), u32> {
    // SAFETY: the slice lives for the call.
    let status = unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn get_header(map_type: u32, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size) };
    if status == STATUS_OK && !data.is_null() {
        Some(take(data, size))
    } else {
        None
    }
}

pub fn send_local_response(status: u16, details: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let serialized = encode_map(headers);
    // SAFETY: all slices live for the call; grpc_status -1 means "not gRPC".
    let result = unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            if body.is_empty() { null() } else { body.as_ptr() },
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    };
    if result == STATUS_OK {
        Ok(())
    } else {
        Err(result)
    }
}

/// A shared-data value and its CAS token; `Ok((None, 0))` when the key does not exist.
pub fn get_shared(key: &str) -> Result<(Option<Vec<u8>>, u32), u32> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: as in `get_buffer`.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        STATUS_OK => Ok((Some(take(data, size)), cas)),
        STATUS_NOT_FOUND => Ok((None, 0)),
        other => Err(other),
    }
}

/// Sets a shared-data value; with `cas != 0` only if the value still has that token.
pub fn set_shared(key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
    // SAFETY: slices live for the call.
    let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Makes `context_id` (an HTTP context) the one the following calls act on, e.g. to answer or
/// resume a request held since its headers arrived.
pub fn set_effective_context(context_id: u32) -> Result<(), u32> {
    // SAFETY: plain value call.
    let status = unsafe { proxy_set_effective_context(context_id) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Lets the effective context's paused request go on (ABI 0.2.1 `proxy_continue_stream` with
/// stream type 0, the HTTP request).
pub fn resume_http_request() -> Result<(), u32> {
    // SAFETY: plain value call.
    let status = unsafe { proxy_continue_stream(0) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;

pub fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: slice and out-pointer live for the call.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == STATUS_OK).then_some(id)
}

pub fn increment_metric(id: u32, by: i64) {
    // SAFETY: plain value call; a failure only loses a count.
    unsafe {
        proxy_increment_metric(id, by);
    }
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain value call; a failure only loses a sample.
    unsafe {
        proxy_record_metric(id, value);
    }
}

/// Calls a foreign function the host registered (Envoy: `verify_signature`). `Err(status)` if
/// the host has none of that name (Kong) or it failed.
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: pointers and lengths describe live slices; out-pointers outlive the call and the
    // returned block is ours (see `take`).
    let status =
        unsafe { proxy_call_foreign_function(name.as_ptr(), name.len(), arguments.as_ptr(), arguments.len(), &mut data, &mut size) };
    match status {
        STATUS_OK => Ok(take(data, size)),
        other => Err(other),
    }
}
