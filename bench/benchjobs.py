"""The task functions both queues run in the benchmark."""


def noop():
    """Does nothing: the benchmark measures the queue, not the work."""
    return None
