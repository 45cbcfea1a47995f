"""The API's routers, one module per concern; `create_app` includes each module's `router`."""

ROUTERS = (
    "tqcli.server.routes.tasks",
    "tqcli.server.routes.dlq",
    "tqcli.server.routes.dags",
    "tqcli.server.routes.catalog",
    "tqcli.server.routes.audit",
    "tqcli.server.routes.metrics",
    "tqcli.server.routes.events",
    "tqcli.server.routes.logs",
    "tqcli.server.routes.dashboard",
)
