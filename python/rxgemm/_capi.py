"""ctypes declarations of librxgemm's public API (client/rxgemm.h), kept field for field.

The library is found as $RXGEMM_LIBRARY when set (the build tree's tests point it at
client/.libs/librxgemm.so), else as librxgemm.so.0 on the loader's path (the installed
librxgemm0 package).
"""

import ctypes
import os

c_int64 = ctypes.c_int64
c_uint64 = ctypes.c_uint64
c_uint32 = ctypes.c_uint32
c_int32 = ctypes.c_int32
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_float_p = ctypes.POINTER(ctypes.c_float)

RXG_COL_MAJOR = 0
RXG_ROW_MAJOR = 1

RXG_CANCEL_NOT_FOUND = 0
RXG_CANCEL_QUEUED = 1
RXG_CANCEL_RUNNING = 2


class Timings(ctypes.Structure):
    _fields_ = [("queued_ns", c_uint64), ("h2d_ns", c_uint64), ("kernel_ns", c_uint64),
                ("d2h_ns", c_uint64), ("total_ns", c_uint64)]

    def as_dict(self):
        return {name: int(getattr(self, name)) for name, _ in self._fields_}


class GemmArgs(ctypes.Structure):
    _fields_ = [
        ("layout", ctypes.c_int), ("trans_a", ctypes.c_int), ("trans_b", ctypes.c_int),
        ("m", c_int64), ("n", c_int64), ("k", c_int64),
        ("alpha", ctypes.c_float), ("beta", ctypes.c_float),
        ("a", c_void_p), ("lda", c_int64),
        ("b", c_void_p), ("ldb", c_int64),
        ("c", c_void_p), ("ldc", c_int64),
        ("batch_count", c_int64),
        ("stride_a", c_int64), ("stride_b", c_int64), ("stride_c", c_int64),
        ("a_buf", c_void_p), ("a_offset", c_size_t),
        ("b_buf", c_void_p), ("b_offset", c_size_t),
        ("c_buf", c_void_p), ("c_offset", c_size_t),
        ("c_out_buf", c_void_p), ("c_out_offset", c_size_t),
        ("a_tensor", c_void_p), ("b_tensor", c_void_p),
        ("c_tensor", c_void_p), ("c_out_tensor", c_void_p),
    ]


class JobOptions(ctypes.Structure):
    _fields_ = [("priority", ctypes.c_uint), ("deadline_ms", c_uint64)]


class ServerInfo(ctypes.Structure):
    _fields_ = [("protocol_version", c_uint32), ("daemon_version", c_char_p),
                ("device", c_char_p), ("max_frame_bytes", c_uint64), ("client_id", c_uint32),
                ("busy_poll_us", c_uint32)]


class JobRecord(ctypes.Structure):
    _fields_ = [("request_id", c_uint64), ("client_id", c_uint32), ("m", c_int64),
                ("n", c_int64), ("k", c_int64), ("status", ctypes.c_int),
                ("timings", Timings)]


class DeviceInfo(ctypes.Structure):
    _fields_ = [("index", c_uint32), ("platform", c_char_p), ("name", c_char_p),
                ("type", c_char_p), ("version", c_char_p), ("driver", c_char_p),
                ("global_mem_bytes", c_uint64), ("compute_units", c_uint32),
                ("clock_mhz", c_uint32), ("in_use", ctypes.c_int)]


class KernelChoice(ctypes.Structure):
    _fields_ = [("trans_a", ctypes.c_int), ("trans_b", ctypes.c_int),
                ("size_class", ctypes.c_uint), ("kernel", c_char_p),
                ("gflops", ctypes.c_double), ("tuned", ctypes.c_int)]


class ClientStats(ctypes.Structure):
    _fields_ = [("client_id", c_uint32), ("name", c_char_p), ("uid", c_int64),
                ("pid", c_int64), ("jobs_ok", c_uint64), ("jobs_failed", c_uint64),
                ("requests_rejected", c_uint64), ("jobs_in_flight", c_uint32),
                ("flops", c_uint64), ("timings", Timings), ("bytes_in", c_uint64),
                ("bytes_out", c_uint64), ("tensors", c_uint32), ("tensor_bytes", c_uint64)]


class KernelStats(ctypes.Structure):
    _fields_ = [("kernel", c_char_p), ("jobs", c_uint64), ("flops", c_uint64),
                ("timings", Timings)]


class Status(ctypes.Structure):
    _fields_ = [
        ("daemon_version", c_char_p), ("device", c_char_p), ("uptime_ns", c_uint64),
        ("clients_connected", c_uint32), ("clients_total", c_uint64),
        ("jobs_ok", c_uint64), ("jobs_failed", c_uint64), ("requests_rejected", c_uint64),
        ("jobs_queued", c_uint32), ("flops_total", c_uint64), ("kernel_ns_total", c_uint64),
        ("device_global_mem_bytes", c_uint64), ("device_max_alloc_bytes", c_uint64),
        ("n_recent", c_size_t), ("recent", ctypes.POINTER(JobRecord)),
        ("n_devices", c_size_t), ("devices", ctypes.POINTER(DeviceInfo)),
        ("kernel_cache_dir", c_char_p), ("kernel_cache_writable", ctypes.c_int),
        ("kernel_cache_max_bytes", c_uint64), ("kernel_cache_entries", c_uint64),
        ("kernel_cache_bytes", c_uint64), ("kernel_cache_hits", c_uint64),
        ("kernel_cache_misses", c_uint64), ("kernel_cache_memory_hits", c_uint64),
        ("kernel_cache_rejected", c_uint64), ("kernel_cache_evictions", c_uint64),
        ("kernel_cache_compile_ns", c_uint64), ("kernel_cache_load_ns", c_uint64),
        ("n_kernels", c_size_t), ("kernels", ctypes.POINTER(KernelChoice)),
        ("vram_budget_bytes", c_uint64), ("vram_reserved_bytes", c_uint64),
        ("vram_in_use_bytes", c_uint64), ("vram_peak_bytes", c_uint64),
        ("vram_pool_bytes", c_uint64), ("vram_pool_buffers", c_uint64),
        ("jobs_waiting_for_memory", c_uint32), ("vram_client_quota_bytes", c_uint64),
        ("jobs_split", c_uint64),
        ("max_queue", c_uint32), ("client_max_queue", c_uint32), ("jobs_waiting", c_uint32),
        ("clients_waiting", c_uint32), ("jobs_rejected_busy", c_uint64),
        ("jobs_expired", c_uint64), ("jobs_cancelled", c_uint64),
        ("n_clients", c_size_t), ("clients", ctypes.POINTER(ClientStats)),
        ("departed", ClientStats),
        ("n_kernel_stats", c_size_t), ("kernel_stats", ctypes.POINTER(KernelStats)),
        ("device_busy_ns", c_uint64), ("device_recent_busy_ns", c_uint64),
        ("device_recent_window_ns", c_uint64), ("device_current_job_ns", c_uint64),
        ("device_utilisation", ctypes.c_double), ("device_utilisation_recent", ctypes.c_double),
        ("shm_regions", c_uint32), ("shm_region_bytes", c_uint64),
        ("shm_regions_registered", c_uint64), ("shm_jobs", c_uint64),
        ("shm_jobs_in_place", c_uint64),
        ("nas_plan_cache_capacity", c_uint32), ("nas_plan_cache_entries", c_uint32),
        ("nas_plan_cache_hits", c_uint64), ("nas_plan_cache_misses", c_uint64),
        ("nas_plan_cache_evictions", c_uint64), ("nas_plan_cache_bytes", c_uint64),
        ("host_buffers_kept", c_uint32), ("host_buffer_kept_bytes", c_uint64),
        ("host_buffers_pinned", c_uint32), ("host_buffer_pinned_bytes", c_uint64),
        ("host_buffer_hits", c_uint64), ("host_buffer_misses", c_uint64),
        ("host_buffer_pins_made", c_uint64),
    ]


class NasArgs(ctypes.Structure):
    _fields_ = [
        ("genotype", c_char_p), ("dataset", ctypes.c_int),
        ("c", c_int32), ("layers", c_int32), ("classes", c_int32), ("height", c_int32),
        ("width", c_int32), ("batch", c_int32),
        ("weights", c_void_p), ("n_weights", c_size_t), ("weight_seed", c_uint64),
        ("input", c_void_p), ("input_seed", c_uint64),
        ("warmup", c_uint32), ("repeat", c_uint32),
        ("logits", c_void_p),
        ("supernet", ctypes.c_int), ("steps", c_uint32), ("multiplier", c_uint32),
        ("alpha_normal", c_void_p), ("alpha_reduce", c_void_p),
        ("weights_buf", c_void_p), ("weights_offset", c_size_t),
        ("input_buf", c_void_p), ("input_offset", c_size_t),
        ("weights_tensor", c_void_p), ("input_tensor", c_void_p),
        ("want_breakdown", ctypes.c_int),
    ]


class NasPart(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("ns", c_uint64), ("steps", c_uint32)]


class NasResult(ctypes.Structure):
    _fields_ = [
        ("genotype", c_char_p), ("params", c_uint64), ("macs", c_uint64),
        ("weight_floats", c_uint64), ("peak_device_bytes", c_uint64),
        ("activation_bytes", c_uint64), ("batch", c_int32), ("batch_piece", c_int32),
        ("classes", c_int32), ("steps", c_uint32), ("latency_median_ns", c_uint64),
        ("latency_p90_ns", c_uint64), ("latency_mean_ns", c_uint64),
        ("run_ns", ctypes.POINTER(c_uint64)), ("n_runs", c_size_t),
        ("by_op", ctypes.POINTER(NasPart)), ("n_by_op", c_size_t),
        ("by_cell", ctypes.POINTER(NasPart)), ("n_by_cell", c_size_t),
        ("profiled", ctypes.c_int), ("unprofiled_median_ns", c_uint64),
    ]


def _load():
    path = os.environ.get("RXGEMM_LIBRARY") or "librxgemm.so.0"
    lib = ctypes.CDLL(path)
    P = c_void_p
    sigs = {
        "rxg_strerror": (c_char_p, [ctypes.c_int]),
        "rxg_connect": (ctypes.c_int, [c_char_p, c_char_p, ctypes.POINTER(P)]),
        "rxg_close": (None, [P]),
        "rxg_errmsg": (c_char_p, [P]),
        "rxg_server_info": (ctypes.POINTER(ServerInfo), [P]),
        "rxg_gemm": (ctypes.c_int, [P, ctypes.POINTER(GemmArgs), ctypes.POINTER(Timings)]),
        "rxg_buffer_create": (ctypes.c_int, [P, c_size_t, ctypes.POINTER(P)]),
        "rxg_buffer_ptr": (c_void_p, [P]),
        "rxg_buffer_size": (c_size_t, [P]),
        "rxg_buffer_free": (ctypes.c_int, [P]),
        "rxg_tensor_create": (ctypes.c_int, [P, ctypes.POINTER(c_int64), ctypes.c_int,
                                             c_void_p, ctypes.POINTER(P)]),
        "rxg_tensor_create_from_buffer": (ctypes.c_int, [P, P, c_size_t,
                                                         ctypes.POINTER(c_int64), ctypes.c_int,
                                                         ctypes.POINTER(P)]),
        "rxg_tensor_floats": (c_size_t, [P]),
        "rxg_tensor_read": (ctypes.c_int, [P, c_void_p, c_size_t]),
        "rxg_tensor_read_to_buffer": (ctypes.c_int, [P, P, c_size_t]),
        "rxg_tensor_free": (ctypes.c_int, [P]),
        "rxg_submit_gemm": (ctypes.c_int, [P, ctypes.POINTER(GemmArgs),
                                           ctypes.POINTER(JobOptions),
                                           ctypes.POINTER(c_uint64)]),
        "rxg_wait": (ctypes.c_int, [P, c_uint64, ctypes.POINTER(Timings)]),
        "rxg_wait_any": (ctypes.c_int, [P, ctypes.c_int, ctypes.POINTER(c_uint64),
                                        ctypes.POINTER(Timings)]),
        "rxg_cancel": (ctypes.c_int, [P, c_uint64, ctypes.POINTER(ctypes.c_int)]),
        "rxg_fd": (ctypes.c_int, [P]),
        "rxg_status": (ctypes.c_int, [P, ctypes.POINTER(ctypes.POINTER(Status))]),
        "rxg_status_free": (None, [ctypes.POINTER(Status)]),
        "rxg_nas_eval": (ctypes.c_int, [P, ctypes.POINTER(NasArgs),
                                        ctypes.POINTER(ctypes.POINTER(NasResult))]),
        "rxg_nas_result_free": (None, [ctypes.POINTER(NasResult)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


lib = _load()
