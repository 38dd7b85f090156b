"""The scenarios of ``digis loadtest``; :data:`SCENARIOS` maps a name to its class.

Each module holds one scenario: the parent-side :class:`~loadtest.runner.Scenario`
subclass and, when it needs one, the worker role that generates its load.
"""

from __future__ import annotations

from loadtest.runner import Scenario
from loadtest.scenarios.calls import CallsScenario
from loadtest.scenarios.connect import ConnectScenario
from loadtest.scenarios.mixed import MixedScenario
from loadtest.scenarios.stream import StreamScenario
from loadtest.scenarios.tips import TipsScenario

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (ConnectScenario, StreamScenario, CallsScenario, TipsScenario, MixedScenario)
}
