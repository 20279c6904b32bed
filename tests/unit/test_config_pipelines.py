"""Several app projects: `[[pipelines]]` tables in the TOML file, each pipeline's settings over
the defaults every other source gives, and the clashes that would mix two pipelines' work."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.commands.operations import REPLAY_SETTINGS
from connector.config import InputTopicSettings, Settings, load_settings
from connector.errors import ConfigError

KEY = {"TOLOKA_API_KEY": "secret-key-123"}
TWO = """
[connector]
batch_max_items = 200
input_format = "json"

[[pipelines]]
app_project_id = "text"
input_topic = "text.items"
output_topic = "text.results"
dlq_topic = "text.dlq"

[[pipelines]]
app_project_id = "images"
input_topic = "images.items"
output_topic = "images.results"
dlq_topic = "images.dlq"
key_field = "image_id"
batch_max_items = 50
max_in_flight = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, text), environ={**KEY, **(environ or {})})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return caught.value.problems


def test_each_table_is_a_pipeline_in_file_order_over_the_shared_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, TWO)
    text, images = settings.pipelines
    assert [p.toloka.app_project_id for p in settings.pipelines] == ["text", "images"]
    assert (text.uploader.input_topic, text.poller.output_topic, text.uploader.dlq_topic) == (
        "text.items", "text.results", "text.dlq",
    )  # fmt: skip
    assert (images.uploader.input_topic, images.poller.output_topic) == (
        "images.items", "images.results",
    )  # fmt: skip
    assert (text.uploader.batch_max_items, images.uploader.batch_max_items) == (200, 50)
    assert (text.uploader.max_in_flight, images.uploader.max_in_flight) == (4, 2)
    assert (text.poller.key_field, images.poller.key_field) == ("id", "image_id")
    assert images.uploader.key_field == "image_id"  # the uploader matches items by it too
    # Process-wide settings are every pipeline's.
    assert text.uploader.group_id == images.uploader.group_id == "toloka-connector"
    assert text.kafka == images.kafka
    assert settings.groups == text.groups


def test_without_tables_the_single_project_variables_are_the_one_pipeline() -> None:
    settings = load_settings(environ={**KEY, "TOLOKA_APP_PROJECT_ID": "p"})
    assert settings.pipelines == (settings,)
    assert settings.pipelines[0].toloka.app_project_id == "p"


def test_a_tables_keys_win_over_the_environment_which_gives_every_pipelines_default(
    tmp_path: Path,
) -> None:
    settings = load(tmp_path, TWO, {"CONNECTOR_BATCH_MAX_ITEMS": "300", "CONNECTOR_LINGER_MS": "7"})
    text, images = settings.pipelines
    assert (text.uploader.batch_max_items, images.uploader.batch_max_items) == (300, 50)
    assert text.uploader.linger_ms == images.uploader.linger_ms == 7


def test_formats_are_per_pipeline(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        TWO.replace('key_field = "image_id"', 'output_format = "avro"')
        + '\n[schema_registry]\nurl = "http://registry:8081"\n',
    )
    text, images = settings.pipelines
    assert (text.poller.output_format, images.poller.output_format) == ("json", "avro")


def test_a_pipelines_format_needs_the_registry(tmp_path: Path) -> None:
    text = TWO.replace('key_field = "image_id"', 'input_format = "avro"')
    assert problems(tmp_path, text) == [
        "SCHEMA_REGISTRY_URL: is required by CONNECTOR_INPUT_FORMAT=avro"
    ]


def test_a_command_declaring_few_groups_gets_each_pipelines_share_of_them(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TWO), environ={}, groups=REPLAY_SETTINGS)
    assert [p.get(InputTopicSettings).input_topic for p in settings.pipelines] == [
        "text.items", "images.items",
    ]  # fmt: skip


# --- one line per problem, naming the table and the key ---------------------------------------


def test_a_bad_value_in_a_table_names_the_table_and_key(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    assert problems(tmp_path, TWO.replace("batch_max_items = 50", "batch_max_items = 0")) == [
        f"{path}: [[pipelines]] #2 batch_max_items: '0' must be >= 1"
    ]


def test_a_bad_default_is_one_line_however_many_pipelines(tmp_path: Path) -> None:
    assert problems(tmp_path, TWO, {"CONNECTOR_LINGER_MS": "-1"}) == [
        "CONNECTOR_LINGER_MS: '-1' must be >= 0"
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("batch_max_item = 5", "batch_max_item: unknown setting; did you mean batch_max_items?"),
        ("output_topics = 'x'", "output_topics: unknown setting; did you mean output_topic?"),
        ("frobnicate = 1", "frobnicate: unknown setting (no setting has a similar name"),
        (
            "group_id = 'g'",
            "group_id: is one setting for every pipeline (CONNECTOR_GROUP_ID): set it outside "
            "[[pipelines]]",
        ),
        (
            "api_key = 'k'",
            "api_key: is one setting for every pipeline (TOLOKA_API_KEY): set it outside "
            "[[pipelines]]",
        ),
        ("linger_ms = [1]", "linger_ms: expected a string, number or boolean"),
    ],
)
def test_a_key_no_pipeline_has_is_refused_with_the_nearest_name(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "connector.toml"
    [found] = problems(tmp_path, TWO + line + "\n")
    assert found.startswith(f"{path}: [[pipelines]] #2 {problem}")


def test_a_table_without_a_project_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    text = TWO + '\n[[pipelines]]\ninput_topic = "third.items"\n'
    assert problems(tmp_path, text) == [f"{path}: [[pipelines]] #3 app_project_id: is required"]


def test_a_single_project_variable_beside_tables_is_refused(tmp_path: Path) -> None:
    [found] = problems(tmp_path, TWO, {"TOLOKA_APP_PROJECT_ID": "p"})
    assert found.startswith("TOLOKA_APP_PROJECT_ID: not used when ")


def test_pipelines_as_one_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    found = problems(tmp_path, "[pipelines]\napp_project_id = 'a'\n")
    assert found[0] == f"{path}: pipelines: must be [[pipelines]] tables, one per app project"


def pipeline(project: str, **keys: str | bool) -> str:
    lines = [f"{name} = {value!r}".replace("True", "true") for name, value in keys.items()]
    return "\n".join(["[[pipelines]]", f"app_project_id = {project!r}", *lines, ""])


TOPICS: dict[str, str | bool] = {
    "input_topic": "a.in",
    "output_topic": "a.out",
    "dlq_topic": "a.dlq",
}
OTHER: dict[str, str | bool] = {
    "input_topic": "b.in",
    "output_topic": "b.out",
    "dlq_topic": "b.dlq",
}


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        (
            pipeline("a", **OTHER),
            "app_project_id: 'a' is also pipeline #1's; each pipeline is a different app project",
        ),
        (
            pipeline("b", **{**OTHER, "output_topic": "a.out"}),
            "output_topic: 'a.out' is also pipeline #1's; each pipeline needs its own",
        ),
        (
            pipeline("b", **{**OTHER, "dlq_topic": "a.dlq"}),
            "dlq_topic: 'a.dlq' is also pipeline #1's; each pipeline needs its own",
        ),
        (
            pipeline("b", **{**OTHER, "input_topic": "a.in"}),
            "input_topic: 'a.in' is also pipeline #1's; pipelines share an input topic only "
            "when each sets route_by_header = true",
        ),
        (  # the defaults are shared too: two tables without topics clash on them
            pipeline("b"),
            "output_topic: 'toloka.results' is also pipeline #1's",
        ),
    ],
)
def test_pipelines_that_would_mix_their_work_are_refused(
    tmp_path: Path, second: str, problem: str
) -> None:
    path = tmp_path / "connector.toml"
    first = pipeline("a", **TOPICS) if "toloka.results" not in problem else pipeline("a")
    found = problems(tmp_path, first + second)
    assert found[0].startswith(f"{path}: [[pipelines]] #2 {problem}"), found


def test_an_input_topic_is_shared_when_every_pipeline_on_it_routes_by_header(
    tmp_path: Path,
) -> None:
    routed: dict[str, str | bool] = {**OTHER, "input_topic": "a.in", "route_by_header": True}
    text = pipeline("a", **TOPICS, route_by_header=True) + pipeline("b", **routed)
    settings = load(tmp_path, text)
    assert [p.uploader.input_topic for p in settings.pipelines] == ["a.in", "a.in"]
    one_side = pipeline("a", **TOPICS) + pipeline("b", **routed)
    [found] = problems(tmp_path, one_side)
    assert "input_topic: 'a.in' is also pipeline #1's" in found


def test_route_by_header_for_every_pipeline_may_be_a_default(tmp_path: Path) -> None:
    text = (
        "[connector]\nroute_by_header = true\n"
        + pipeline("a", **TOPICS)
        + pipeline("b", **{**OTHER, "input_topic": "a.in"})
    )
    assert len(load(tmp_path, text).pipelines) == 2


WRITES = "a topic the connector writes (output, dead letters, state) is used for nothing else"


@pytest.mark.parametrize(
    ("first", "second", "problem"),
    [
        (  # a dead-letter topic that is another pipeline's output
            TOPICS,
            {**OTHER, "dlq_topic": "a.out"},
            f"#2 dlq_topic: 'a.out' is also pipeline #1's output_topic; {WRITES}",
        ),
        (  # an output topic that is another pipeline's dead-letter topic (outputs come first)
            TOPICS,
            {**OTHER, "output_topic": "a.dlq"},
            f"#1 dlq_topic: 'a.dlq' is also pipeline #2's output_topic; {WRITES}",
        ),
        (  # a topic one pipeline writes, another reads
            TOPICS,
            {**OTHER, "input_topic": "a.out"},
            f"#2 input_topic: 'a.out' is also pipeline #1's output_topic; {WRITES}",
        ),
        (
            TOPICS,
            {**OTHER, "input_topic": "a.dlq", "route_by_header": True},
            f"#2 input_topic: 'a.dlq' is also pipeline #1's dlq_topic; {WRITES}",
        ),
        (  # ... whichever table comes first
            {**TOPICS, "input_topic": "b.dlq"},
            OTHER,
            f"#1 input_topic: 'b.dlq' is also pipeline #2's dlq_topic; {WRITES}",
        ),
        (  # the state topic every pipeline's cursor is on
            TOPICS,
            {**OTHER, "dlq_topic": "toloka.connector.state"},
            "#2 dlq_topic: 'toloka.connector.state' is also the state_topic (every pipeline's "
            f"cursor); {WRITES}",
        ),
        (
            TOPICS,
            {**OTHER, "output_topic": "toloka.connector.state"},
            "#2 output_topic: 'toloka.connector.state' is also the state_topic (every "
            f"pipeline's cursor); {WRITES}",
        ),
        (
            {**TOPICS, "input_topic": "toloka.connector.state"},
            OTHER,
            "#1 input_topic: 'toloka.connector.state' is also the state_topic (every "
            f"pipeline's cursor); {WRITES}",
        ),
        (  # one pipeline's own topics
            TOPICS,
            {**OTHER, "dlq_topic": "b.out"},
            f"#2 dlq_topic: 'b.out' is also pipeline #2's output_topic; {WRITES}",
        ),
        (
            TOPICS,
            {**OTHER, "input_topic": "b.out"},
            f"#2 input_topic: 'b.out' is also pipeline #2's output_topic; {WRITES}",
        ),
    ],
)
def test_a_topic_a_pipeline_writes_is_no_other_topic_of_any_pipeline(
    tmp_path: Path, first: dict[str, str | bool], second: dict[str, str | bool], problem: str
) -> None:
    path = tmp_path / "connector.toml"
    found = problems(tmp_path, pipeline("a", **first) + pipeline("b", **second))
    assert found == [f"{path}: [[pipelines]] {problem}"]


def test_the_state_topic_setting_is_the_one_compared(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    text = "[connector]\nstate_topic = 'a.out'\n" + pipeline("a", **TOPICS) + pipeline("b", **OTHER)
    assert problems(tmp_path, text) == [
        f"{path}: [[pipelines]] #1 output_topic: 'a.out' is also the state_topic (every "
        f"pipeline's cursor); {WRITES}"
    ]
    moved = "[connector]\nstate_topic = 'own.state'\n"
    assert (
        len(load(tmp_path, moved + pipeline("a", **TOPICS) + pipeline("b", **OTHER)).pipelines) == 2
    )
