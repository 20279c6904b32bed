"""What `check` verifies of the Schema Registry when a value format uses it: the registry
answers (with the credentials given), and the output subject can take the schema the app's specs
give: a CONNECTOR_OUTPUT_SUBJECT must exist already, and a subject that holds versions must
accept the derived schema under its compatibility level (the registry's own test)."""

from __future__ import annotations

from connector.app.checks import Report
from connector.config import SchemaRegistrySettings, Settings
from connector.errors import SchemaRegistryError
from connector.toloka.models import App


def check_registry(settings: Settings, report: Report, app: App | None) -> None:
    uploader, poller = settings.uploader, settings.poller
    if uploader.input_format == "json" and poller.output_format == "json":
        return
    # Imported only then: the serializers' libraries are not needed for JSON.
    from connector.formats.encoding import derived_schema, output_subject  # noqa: PLC0415
    from connector.schema_registry.client import registry_call, registry_client  # noqa: PLC0415

    registry_settings = settings.get(SchemaRegistrySettings)
    client = registry_client(registry_settings)
    subjects: list[str] = []

    def reach() -> str:
        subjects.extend(registry_call(client.get_subjects, "listing the subjects"))
        return f"{len(subjects)} subjects"

    if not report.attempt("Schema Registry reachable", reach) or poller.output_format == "json":
        return
    subject = output_subject(poller.output_topic, poller.output_subject)
    what = f"output subject {subject}"
    if subject not in subjects:
        if poller.output_subject:
            named = type(poller).variable("output_subject")
            report.line(False, what, f"does not exist ({named} names an existing subject)")
        else:
            report.line(True, what, "new: the poller registers its schema at start-up")
        return
    if app is None:
        report.line(False, what, "exists; compatibility not tested (the app's specs unread)")
        return
    schema = derived_schema(poller.output_format, (app.input_spec, app.output_spec))

    def compatible() -> str:
        if registry_call(lambda: client.test_compatibility(subject, schema), f"testing {what}"):
            return f"accepts the {poller.output_format} schema of the app's specs"
        raise SchemaRegistryError(
            f"refuses the {poller.output_format} schema of the app's specs as incompatible with "
            "its versions under its compatibility level: name another subject in "
            f"{type(poller).variable('output_subject')}, or relax the subject's level"
        )

    report.attempt(what, compatible)
