"""The fake GPU shared by the fake pycuda (pycuda_fakes) and the fake TensorRT (trt_fakes): device
memory, streams as queues that run at ``Stream.synchronize()``, and a GPU clock.

A copy reads or writes the host buffer when it runs, as DMA does; misuse that would corrupt memory
on a real GPU stops the test (``FakeGPUError``).
"""
import itertools
import weakref

EXECUTE_MS = 0.25          # fake GPU time of one execute; events around it measure exactly this

# ------------------------------------------------------------------------------------------------
# the fake GPU: device memory, streams, clock (shared by the fake pycuda and the fake TensorRT)
# ------------------------------------------------------------------------------------------------
MEMORY = {}                # device address -> bytearray (fixed size: allocations do not grow)
STREAMS = weakref.WeakValueDictionary()   # stream handle -> live fake pycuda Stream (TensorRT gets the handle)
CLOCK = [0.0]              # fake GPU time in ms
_ADDRESSES = itertools.count(0x10000, 0x10000)
_HANDLES = itertools.count(0xCA00)


class ProcessAborted(BaseException):
    """What the real process does when a C++ noexcept function lets an exception out: terminate.

    A BaseException so that ``except Exception`` in the code under test cannot swallow it."""


class FakeGPUError(AssertionError):
    """The real call would corrupt memory or read garbage: the fake stops the test instead."""


def read_device(address, nbytes):
    """``nbytes`` from the start of the allocation at ``address`` (it must be that large)."""
    if address not in MEMORY:
        raise FakeGPUError("device address {:#x} is not the start of a live allocation".format(address))
    if len(MEMORY[address]) < nbytes:
        raise FakeGPUError("reading {} bytes from a {}-byte allocation".format(nbytes, len(MEMORY[address])))
    return bytes(MEMORY[address][:nbytes])


def write_device(address, data):
    if address not in MEMORY:
        raise FakeGPUError("device address {:#x} is not the start of a live allocation".format(address))
    if len(data) > len(MEMORY[address]):
        raise FakeGPUError("writing {} bytes into a {}-byte allocation".format(len(data), len(MEMORY[address])))
    MEMORY[address][:len(data)] = data


def enqueue(handle, what, work):
    """Queue ``work`` on the stream with ``handle``; 0 is the legacy default stream, which waits
    for every other stream, then runs (so it is synchronous here)."""
    if handle == 0:
        for stream in list(STREAMS.values()):
            stream.run_queue()
        work()
        return
    if handle not in STREAMS:
        raise FakeGPUError("{} on unknown or destroyed stream handle {:#x}".format(what, handle))
    STREAMS[handle].queue.append((what, work))
