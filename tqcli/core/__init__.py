"""The core: tasks, submission, dependencies, dispatch and the worker loop."""
