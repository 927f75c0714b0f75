//! librdkafka's admin API called directly, for what the rdkafka crate does
//! not offer or offers lossily:
//!
//! - IncrementalAlterConfigs: the crate wraps only the legacy AlterConfigs,
//!   which resets every config of the topic that the request does not name.
//! - per-resource errors: the crate's AlterConfigs and DescribeConfigs
//!   results drop them, so a refused change would look like a success.
//! - the broker's error messages for CreateTopics and CreatePartitions: the
//!   crate keeps only the error code, and "Replication factor: 2 larger than
//!   available brokers: 1." says more than "Invalid replication factor".
//!
//! Every request runs on an event queue of its own and blocks the calling
//! thread until its result arrives: librdkafka answers within the request
//! timeout, with a timeout error if need be. Callers run these functions on
//! a blocking thread. Each librdkafka object is held by an [`Owned`] guard
//! that destroys it; librdkafka copies a request's arguments and options
//! when the request is submitted, so the guards may drop right after.

// The one module allowed unsafe code: librdkafka's admin API is C, reached through FFI.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;

/// How much longer than the request timeout to wait for librdkafka's own
/// answer, which it sends when the request timeout expires.
const EVENT_MARGIN: Duration = Duration::from_secs(5);

/// An error from librdkafka or the broker: its code and the most specific
/// message either gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeError {
    pub code: RDKafkaErrorCode,
    pub message: String,
}

impl NativeError {
    fn new(code: RDKafkaErrorCode, message: Option<String>) -> Self {
        let message = message
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| code.to_string());
        Self { code, message }
    }

    fn invalid_argument(message: String) -> Self {
        Self::new(RDKafkaErrorCode::InvalidArgument, Some(message))
    }
}

/// One entry of a DescribeConfigs result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    /// `None` for sensitive configs, which the broker never reveals.
    pub value: Option<String>,
    /// Whether the value is set on the topic itself (a dynamic topic config)
    /// rather than inherited from the broker or Kafka's defaults.
    pub set_on_topic: bool,
}

/// The configs of each described topic, or the error the broker gave for it.
pub type DescribedTopics = Vec<(String, Result<Vec<DescribedConfig>, NativeError>)>;

/// Creates one topic. `replication_factor` -1 asks for the broker default.
pub fn create_topic<C: ClientContext>(
    client: &Client<C>,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), NativeError> {
    let c_name = c_string(name)?;
    let mut errstr = ErrStr::new();
    // SAFETY: the name is a valid C string and errstr is writable for its
    // declared size; a null result means invalid arguments, explained in
    // errstr.
    let new_topic = unsafe {
        Owned::from_raw(rd::rd_kafka_NewTopic_new(
            c_name.as_ptr(),
            partitions,
            replication_factor,
            errstr.as_mut_ptr(),
            errstr.capacity(),
        ))
    }
    .ok_or_else(|| NativeError::invalid_argument(errstr.message()))?;
    for (key, value) in configs {
        let (key, value) = (c_string(key)?, c_string(value)?);
        // SAFETY: new_topic is live; librdkafka copies key and value.
        let err = unsafe {
            rd::rd_kafka_NewTopic_set_config(new_topic.as_ptr(), key.as_ptr(), value.as_ptr())
        };
        check(err, || format!("invalid config {key:?} = {value:?}"))?;
    }
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
        rd::RD_KAFKA_EVENT_CREATETOPICS_RESULT,
        timeout,
        |rk, options, queue| {
            let mut topics = [new_topic.as_ptr()];
            // SAFETY: every pointer is live for the duration of the call, and
            // librdkafka copies the topic and the options.
            unsafe {
                rd::rd_kafka_CreateTopics(rk, topics.as_mut_ptr(), topics.len(), options, queue)
            }
        },
    )?;
    let mut count = 0;
    // SAFETY: the event is a CreateTopics result (checked by `request`); the
    // array it returns lives as long as the event.
    let results = unsafe {
        let result = rd::rd_kafka_event_CreateTopics_result(event.as_ptr());
        rd::rd_kafka_CreateTopics_result_topics(result, &mut count)
    };
    first_topic_error(results, count)
}

/// Raises the partition count of `topic` to `total`.
pub fn create_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    total: usize,
    timeout: Duration,
) -> Result<(), NativeError> {
    let c_topic = c_string(topic)?;
    let mut errstr = ErrStr::new();
    // SAFETY: as for NewTopic above.
    let new_partitions = unsafe {
        Owned::from_raw(rd::rd_kafka_NewPartitions_new(
            c_topic.as_ptr(),
            total,
            errstr.as_mut_ptr(),
            errstr.capacity(),
        ))
    }
    .ok_or_else(|| NativeError::invalid_argument(errstr.message()))?;
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS,
        rd::RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT,
        timeout,
        |rk, options, queue| {
            let mut partitions = [new_partitions.as_ptr()];
            // SAFETY: as for CreateTopics above.
            unsafe {
                rd::rd_kafka_CreatePartitions(
                    rk,
                    partitions.as_mut_ptr(),
                    partitions.len(),
                    options,
                    queue,
                )
            }
        },
    )?;
    let mut count = 0;
    // SAFETY: the event is a CreatePartitions result (checked by `request`).
    let results = unsafe {
        let result = rd::rd_kafka_event_CreatePartitions_result(event.as_ptr());
        rd::rd_kafka_CreatePartitions_result_topics(result, &mut count)
    };
    first_topic_error(results, count)
}

/// Describes the configs of `topics` in one request; each topic gets its
/// own result because the broker answers for each separately (one may be
/// denied while the others are not).
pub fn describe_topic_configs<C: ClientContext>(
    client: &Client<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<DescribedTopics, NativeError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let resources = topics
        .iter()
        .map(|topic| topic_resource(topic))
        .collect::<Result<Vec<_>, _>>()?;
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
        rd::RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT,
        timeout,
        |rk, options, queue| {
            let mut pointers: Vec<_> = resources.iter().map(Owned::as_ptr).collect();
            // SAFETY: as for CreateTopics above; librdkafka copies the
            // resources.
            unsafe {
                rd::rd_kafka_DescribeConfigs(
                    rk,
                    pointers.as_mut_ptr(),
                    pointers.len(),
                    options,
                    queue,
                )
            }
        },
    )?;
    let mut count = 0;
    // SAFETY: the event is a DescribeConfigs result (checked by `request`);
    // the resources, their entries and their strings live as long as the
    // event, which outlives this function's use of them.
    let resources = unsafe {
        let result = rd::rd_kafka_event_DescribeConfigs_result(event.as_ptr());
        slice(
            rd::rd_kafka_DescribeConfigs_result_resources(result, &mut count),
            count,
        )
    };
    let mut described = Vec::with_capacity(resources.len());
    for &resource in resources {
        // SAFETY: `resource` is an element of the live result array.
        let (name, error) = unsafe { (resource_name(resource), resource_error(resource)) };
        if let Some(error) = error {
            described.push((name, Err(error)));
            continue;
        }
        let mut entry_count = 0;
        // SAFETY: as above; entries live as long as the event.
        let entries = unsafe {
            slice(
                rd::rd_kafka_ConfigResource_configs(resource, &mut entry_count),
                entry_count,
            )
        };
        let configs = entries
            .iter()
            .map(|&entry| {
                // SAFETY: `entry` is an element of the live entries array.
                unsafe {
                    DescribedConfig {
                        name: owned_string(rd::rd_kafka_ConfigEntry_name(entry)).unwrap_or_default(),
                        value: owned_string(rd::rd_kafka_ConfigEntry_value(entry)),
                        set_on_topic: rd::rd_kafka_ConfigEntry_source(entry)
                            == rd::rd_kafka_ConfigSource_t::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG,
                    }
                }
            })
            .collect();
        described.push((name, Ok(configs)));
    }
    Ok(described)
}

/// Sets the given configs of `topic` with IncrementalAlterConfigs (SET
/// operations only): configs that are not named keep their values.
pub fn set_topic_configs<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), NativeError> {
    let resource = topic_resource(topic)?;
    for (key, value) in configs {
        let (key, value) = (c_string(key)?, c_string(value)?);
        // SAFETY: the resource is live; librdkafka copies key and value. A
        // non-null result is an error object that we own and destroy.
        let error = unsafe {
            Owned::from_raw(rd::rd_kafka_ConfigResource_add_incremental_config(
                resource.as_ptr(),
                key.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                value.as_ptr(),
            ))
        };
        if let Some(error) = error {
            // SAFETY: the error object is live until `error` drops.
            return Err(unsafe {
                NativeError::new(
                    rd::rd_kafka_error_code(error.as_ptr()).into(),
                    owned_string(rd::rd_kafka_error_string(error.as_ptr())),
                )
            });
        }
    }
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        rd::RD_KAFKA_EVENT_INCREMENTALALTERCONFIGS_RESULT,
        timeout,
        |rk, options, queue| {
            let mut resources = [resource.as_ptr()];
            // SAFETY: as for CreateTopics above; librdkafka copies the
            // resource.
            unsafe {
                rd::rd_kafka_IncrementalAlterConfigs(
                    rk,
                    resources.as_mut_ptr(),
                    resources.len(),
                    options,
                    queue,
                )
            }
        },
    )?;
    let mut count = 0;
    // SAFETY: the event is an IncrementalAlterConfigs result (checked by
    // `request`); the resources live as long as the event.
    let resources = unsafe {
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event.as_ptr());
        slice(
            rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count),
            count,
        )
    };
    for &resource in resources {
        // SAFETY: `resource` is an element of the live result array.
        if let Some(error) = unsafe { resource_error(resource) } {
            return Err(error);
        }
    }
    Ok(())
}

/// The errors librdkafka reported on the client's main queue since the last
/// call: why brokers could not be reached (connection refused, TLS or SASL
/// failures), which the metadata request itself reports only as a timeout.
/// The admin client serves no callbacks, so nothing else reads this queue.
pub fn drain_client_errors<C: ClientContext>(client: &Client<C>) -> Vec<NativeError> {
    // SAFETY: the client handle is live while `client` is borrowed; the
    // returned queue reference is ours to destroy.
    let Some(queue) =
        (unsafe { Owned::from_raw(rd::rd_kafka_queue_get_main(client.native_ptr())) })
    else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    // The queue only holds what accumulated during one request; the bound
    // keeps a pathological flood from spinning here.
    for _ in 0..10_000 {
        // SAFETY: the queue is live; a non-null event is ours to destroy.
        let Some(event) = (unsafe { Owned::from_raw(rd::rd_kafka_queue_poll(queue.as_ptr(), 0)) })
        else {
            break;
        };
        // SAFETY: the event is live until `event` drops.
        unsafe {
            if rd::rd_kafka_event_type(event.as_ptr()) == rd::RD_KAFKA_EVENT_ERROR {
                errors.push(NativeError::new(
                    rd::rd_kafka_event_error(event.as_ptr()).into(),
                    owned_string(rd::rd_kafka_event_error_string(event.as_ptr())),
                ));
            }
        }
    }
    errors
}

/// Submits one admin request on a private queue and waits for its result
/// event; request-level errors (timeouts, an unreachable controller) come
/// back as `Err`, per-resource errors stay in the event for the caller.
fn request<C, F>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    expected: rd::rd_kafka_event_type_t,
    timeout: Duration,
    submit: F,
) -> Result<Owned<rd::rd_kafka_event_t>, NativeError>
where
    C: ClientContext,
    F: FnOnce(*mut rd::rd_kafka_t, *const rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
{
    let rk = client.native_ptr();
    // SAFETY: rk is live while `client` is borrowed.
    let queue = unsafe { Owned::from_raw(rd::rd_kafka_queue_new(rk)) }
        .expect("librdkafka aborts on allocation failure rather than return no queue");
    // SAFETY: as above; `op` is one of the enum's valid values.
    let options = unsafe { Owned::from_raw(rd::rd_kafka_AdminOptions_new(rk, op)) }
        .expect("every admin operation used here is one librdkafka knows");
    let mut errstr = ErrStr::new();
    let timeout_ms = millis(timeout);
    // SAFETY: options is live and errstr is writable for its declared size.
    let err = unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.as_ptr(),
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.capacity(),
        )
    };
    check(err, || errstr.message())?;
    if matches!(
        op,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS
            | rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS
    ) {
        // Without an operation timeout the broker answers as soon as the
        // controller accepted the request, before the topic or partitions
        // exist; with it, the answer means they do.
        // SAFETY: as above.
        let err = unsafe {
            rd::rd_kafka_AdminOptions_set_operation_timeout(
                options.as_ptr(),
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.capacity(),
            )
        };
        check(err, || errstr.message())?;
    }
    submit(rk, options.as_ptr(), queue.as_ptr());
    // SAFETY: the queue is live; a non-null event is ours to destroy.
    let event = unsafe {
        Owned::from_raw(rd::rd_kafka_queue_poll(
            queue.as_ptr(),
            millis(timeout + EVENT_MARGIN),
        ))
    }
    .ok_or_else(|| {
        NativeError::new(
            RDKafkaErrorCode::OperationTimedOut,
            Some("no answer from librdkafka".into()),
        )
    })?;
    // SAFETY: the event is live until `event` drops.
    unsafe {
        let err = rd::rd_kafka_event_error(event.as_ptr());
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(NativeError::new(
                err.into(),
                owned_string(rd::rd_kafka_event_error_string(event.as_ptr())),
            ));
        }
        let kind = rd::rd_kafka_event_type(event.as_ptr());
        if kind != expected {
            return Err(NativeError::new(
                RDKafkaErrorCode::Fail,
                Some(format!(
                    "librdkafka answered with event type {kind}, expected {expected}"
                )),
            ));
        }
    }
    Ok(event)
}

/// The first error among CreateTopics or CreatePartitions results.
fn first_topic_error(
    results: *mut *const rd::rd_kafka_topic_result_t,
    count: usize,
) -> Result<(), NativeError> {
    // SAFETY: `results` and `count` come from librdkafka's result accessor
    // for a live event.
    for &result in unsafe { slice(results, count) } {
        // SAFETY: `result` is an element of that array.
        unsafe {
            let err = rd::rd_kafka_topic_result_error(result);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(NativeError::new(
                    err.into(),
                    owned_string(rd::rd_kafka_topic_result_error_string(result)),
                ));
            }
        }
    }
    Ok(())
}

fn topic_resource(topic: &str) -> Result<Owned<rd::rd_kafka_ConfigResource_t>, NativeError> {
    let c_topic = c_string(topic)?;
    // SAFETY: the name is a valid C string that librdkafka copies.
    Ok(unsafe {
        Owned::from_raw(rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            c_topic.as_ptr(),
        ))
    }
    .expect("librdkafka allocates a config resource or aborts"))
}

/// # Safety
/// `resource` must point to a live config resource.
unsafe fn resource_name(resource: *const rd::rd_kafka_ConfigResource_t) -> String {
    unsafe { owned_string(rd::rd_kafka_ConfigResource_name(resource)) }.unwrap_or_default()
}

/// # Safety
/// `resource` must point to a live config resource.
unsafe fn resource_error(resource: *const rd::rd_kafka_ConfigResource_t) -> Option<NativeError> {
    unsafe {
        let err = rd::rd_kafka_ConfigResource_error(resource);
        (err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
            NativeError::new(
                err.into(),
                owned_string(rd::rd_kafka_ConfigResource_error_string(resource)),
            )
        })
    }
}

/// # Safety
/// `ptr` must be null or point to a nul-terminated string that outlives the
/// call.
unsafe fn owned_string(ptr: *const c_char) -> Option<String> {
    (!ptr.is_null()).then(|| {
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    })
}

/// # Safety
/// `ptr` must be null (then `count` is ignored) or point to `count` elements
/// that outlive the returned slice.
unsafe fn slice<'a, T>(ptr: *mut *const T, count: usize) -> &'a [*const T] {
    if ptr.is_null() || count == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(ptr, count) }
    }
}

fn c_string(s: &str) -> Result<CString, NativeError> {
    CString::new(s).map_err(|_| NativeError::invalid_argument(format!("{s:?} contains a NUL byte")))
}

fn check(
    err: rd::rd_kafka_resp_err_t,
    message: impl FnOnce() -> String,
) -> Result<(), NativeError> {
    if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(NativeError::new(err.into(), Some(message())))
    }
}

fn millis(duration: Duration) -> c_int {
    c_int::try_from(duration.as_millis()).unwrap_or(c_int::MAX)
}

/// A buffer librdkafka writes an error message into.
struct ErrStr([c_char; 512]);

impl ErrStr {
    fn new() -> Self {
        Self([0; 512])
    }

    fn as_mut_ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr()
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }

    fn message(&self) -> String {
        // SAFETY: the buffer starts zeroed and librdkafka writes a
        // nul-terminated string shorter than its size, so it always holds
        // one.
        unsafe { CStr::from_ptr(self.0.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A librdkafka object this module owns, destroyed on drop.
struct Owned<T: Destroy>(NonNull<T>);

impl<T: Destroy> Owned<T> {
    /// # Safety
    /// `ptr` must be null or an object of type `T` that the caller owns and
    /// that nothing else destroys.
    unsafe fn from_raw(ptr: *mut T) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T: Destroy> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer is owned (see `from_raw`) and destroyed once.
        unsafe { T::destroy(self.0.as_ptr()) }
    }
}

/// The librdkafka destructor of an object type.
trait Destroy {
    /// # Safety
    /// `ptr` must be a live object of this type, not used afterwards.
    unsafe fn destroy(ptr: *mut Self);
}

macro_rules! destroy_with {
    ($($kind:ty => $destroy:path),* $(,)?) => {
        $(impl Destroy for $kind {
            unsafe fn destroy(ptr: *mut Self) {
                unsafe { $destroy(ptr) }
            }
        })*
    };
}

destroy_with! {
    rd::rd_kafka_queue_t => rd::rd_kafka_queue_destroy,
    rd::rd_kafka_event_t => rd::rd_kafka_event_destroy,
    rd::rd_kafka_AdminOptions_t => rd::rd_kafka_AdminOptions_destroy,
    rd::rd_kafka_NewTopic_t => rd::rd_kafka_NewTopic_destroy,
    rd::rd_kafka_NewPartitions_t => rd::rd_kafka_NewPartitions_destroy,
    rd::rd_kafka_ConfigResource_t => rd::rd_kafka_ConfigResource_destroy,
    rd::rd_kafka_error_t => rd::rd_kafka_error_destroy,
}
