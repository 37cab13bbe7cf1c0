"""What users (and banyan's own tests) write stack tests with: render a stack under Pulumi's mocks and
query what it registered (`testkit.render`, one component alone: `testkit.component`), check recorded
inputs against the providers' schemas and the operators' CRDs (`testkit.schema_check`,
`testkit.k8s_check`) and pod specs against Pod Security "restricted" (`testkit.pod_security`), and boot
servers in network namespaces (`testkit.netns`, root only)."""

from testkit.render import (
    PROJECT_DIR,
    UNKNOWN,
    BanyanMocks,
    NoStackFileError,
    PreviewMocks,
    RecordedResource,
    Rendering,
    Secret,
    StackFileError,
    Unknown,
    apply_sets,
    mock_secret_value,
    project_name,
    read_stack_file,
    render_program,
    render_stack,
    resolve_output,
    to_engine_config,
    unwrap,
    version_sets,
    walk_plain,
)

__all__ = [
    "PROJECT_DIR",
    "UNKNOWN",
    "BanyanMocks",
    "NoStackFileError",
    "PreviewMocks",
    "RecordedResource",
    "Rendering",
    "Secret",
    "StackFileError",
    "Unknown",
    "apply_sets",
    "mock_secret_value",
    "project_name",
    "read_stack_file",
    "render_program",
    "render_stack",
    "resolve_output",
    "to_engine_config",
    "unwrap",
    "version_sets",
    "walk_plain",
]
