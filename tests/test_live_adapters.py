"""Live adapters: the simulator, SpecPy (against a stand-in of its documented API), pymmcore-plus
(a real UniMMCore with a pure-Python camera), the watchdog, arming and the safe state."""

import threading
import time
import types

import numpy as np
import pytest

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live import (
    CONFOCAL,
    STED,
    AcquisitionSettings,
    AcquisitionTimeout,
    AdapterFault,
    AdapterUnresponsive,
    Capabilities,
    FaultInjectingAdapter,
    MicroscopeAdapter,
    NotArmed,
    photon_rate,
)
from napari_nanoscopy.live.simulator import SimulatorAdapter
from napari_nanoscopy.live.specpy_adapter import SpecPyAdapter
from napari_nanoscopy.simulation import STANDARD_CONDITIONS


@pytest.fixture(scope="module")
def simulator():
    return SimulatorAdapter(n_frames=4, stimulus_frame=2, size=64, seed=3)


def test_simulator_frames_carry_region_timestamps_parameters_and_dose(simulator):
    caps = simulator.capabilities()
    assert caps.field_shape == (64, 64) and caps.pixel_size_nm == pytest.approx(20.0)
    assert not caps.requires_arming and simulator.armed
    before = time.time()
    frame = simulator.acquire(CONFOCAL)
    assert frame.data.shape == (64, 64) and frame.data.dtype == np.float32 and frame.data.sum() > 0
    assert frame.region == (0, 0, 64, 64) and before <= frame.started <= frame.finished <= time.time()
    assert frame.parameters["depletion_w"] == 0.0 and frame.parameters["timepoint"] == 0
    # dose = photon rate of each beam x dwell time x pixels
    pdt, pixels = STANDARD_CONDITIONS["pdt"], 64 * 64
    assert frame.dose_photons == pytest.approx(photon_rate(STANDARD_CONDITIONS["p_ex"], 635e-9) * pdt * pixels)
    patch = simulator.acquire(STED, (8, 16, 16, 24))
    assert patch.data.shape == (16, 24) and patch.region == (8, 16, 16, 24)
    sted_rate = photon_rate(STANDARD_CONDITIONS["p_ex"], 635e-9) + photon_rate(STANDARD_CONDITIONS["p_sted"], 750e-9)
    assert patch.dose_photons == pytest.approx(sted_rate * pdt * 16 * 24)
    assert patch.dose_photons / (16 * 24) > 1e4 * frame.dose_photons / pixels  # STED light dwarfs confocal


def test_simulator_sted_bleaches_and_bleaching_carries_over_time_points():
    sim = SimulatorAdapter(n_frames=3, stimulus_frame=3, size=64, seed=0)  # a control: the structure stays
    start = sim.fluorescent
    sim.acquire(CONFOCAL)
    np.testing.assert_array_equal(sim.fluorescent, start)  # the standard fluorophore: confocal does not bleach
    sim.acquire(STED, (0, 0, 32, 32))
    after = sim.fluorescent
    assert after[:32, :32].sum() < start[:32, :32].sum()
    np.testing.assert_array_equal(after[32:, 32:], start[32:, 32:])  # only the scanned region bleached
    sim.begin_frame(2)
    assert sim.timepoint == 2
    np.testing.assert_array_equal(sim.fluorescent, after)  # unchanged structure keeps its bleached state
    assert sim.remodelling_onsets == []


def test_simulator_exposes_the_ground_truth_of_remodelling(simulator):
    assert simulator.remodelling_onsets == [2]
    first, last = simulator.ground_truth(0), simulator.ground_truth(3)
    assert first["fibres"].shape == (64, 64) and first["fibres"].dtype == bool
    assert last["fibres"].sum() > first["fibres"].sum()  # fibres grow after the stimulus
    assert last["rings"].sum() < first["rings"].sum()  # rings disassemble


def test_regions_outside_the_field_or_below_the_smallest_patch_are_refused(simulator):
    with pytest.raises(NanoscopyError, match="inside"):
        simulator.acquire(STED, (60, 0, 16, 16))
    with pytest.raises(NanoscopyError, match="at least 16x16"):
        simulator.acquire(STED, (0, 0, 8, 8))
    with pytest.raises(NanoscopyError, match="not 'widefield'"):
        simulator.acquire("widefield")


class _SlowAdapter(MicroscopeAdapter):
    name = "slow"

    def __init__(self, delay, timeout_s, arming=True):
        caps = Capabilities((CONFOCAL,), 20.0, (8, 8), 4, {"excitation": 1e-3, "depletion": 0.0}, (1e-6, 1e-3),
                            {"excitation": 640e-9}, requires_arming=arming)
        super().__init__(caps, {CONFOCAL: AcquisitionSettings(1e-6, 0.0, 1e-5)}, timeout_s)
        self.delay, self.safe_calls, self.release = delay, 0, threading.Event()

    def _acquire(self, modality, region):
        self.release.wait(self.delay)
        return np.ones((region[2], region[3])), {}

    def _safe_state(self):
        self.safe_calls += 1


def test_watchdog_times_out_to_the_safe_state_and_refuses_while_the_call_hangs():
    adapter = _SlowAdapter(delay=5.0, timeout_s=0.2)
    with pytest.raises(NotArmed, match="not armed"):
        adapter.acquire(CONFOCAL)
    assert adapter.safe_calls == 0
    adapter.arm()
    with pytest.raises(AcquisitionTimeout, match="within 0.2 s"):
        adapter.acquire(CONFOCAL)
    assert adapter.safe_calls == 1
    with pytest.raises(AdapterUnresponsive, match="never returned"):
        adapter.acquire(CONFOCAL)
    assert adapter.safe_calls == 2
    assert adapter.busy
    adapter.release.set()  # the hung call returns; the adapter works again
    for _ in range(100):
        if not adapter.busy:
            break
        time.sleep(0.02)
    assert adapter.acquire(CONFOCAL).data.shape == (8, 8)
    adapter.close()
    assert adapter.safe_calls == 3 and not adapter.armed
    with pytest.raises(NanoscopyError, match="closed"):
        adapter.acquire(CONFOCAL)


def test_power_caps_and_dwell_limits_are_checked_when_the_adapter_is_made():
    caps = Capabilities((CONFOCAL,), 20.0, (8, 8), 4, {"excitation": 1e-6, "depletion": 0.0}, (1e-6, 1e-4),
                        {"excitation": 640e-9}, requires_arming=True)
    with pytest.raises(NanoscopyError, match="outside 0 to 1e-06 W"):
        MicroscopeAdapter(caps, {CONFOCAL: AcquisitionSettings(2e-6, 0.0, 1e-5)})
    with pytest.raises(NanoscopyError, match="dwell time"):
        MicroscopeAdapter(caps, {CONFOCAL: AcquisitionSettings(1e-6, 0.0, 1e-3)})


def test_fault_injection_raises_hangs_and_disconnects_each_time_into_the_safe_state(simulator):
    faulty = FaultInjectingAdapter(simulator, {0: "raise", 1: "hang", 3: "disconnect"}, hang_s=20.0, timeout_s=3.0)
    with pytest.raises(AdapterFault, match="InjectedFault"):
        faulty.acquire(STED, (0, 0, 16, 16))
    assert faulty.safe_state_calls == 1
    with pytest.raises(AcquisitionTimeout):
        faulty.acquire(STED, (0, 0, 16, 16))
    assert faulty.safe_state_calls == 2
    faulty.release()
    for _ in range(100):
        if not faulty.busy:
            break
        time.sleep(0.02)
    assert faulty.acquire(CONFOCAL).data.shape == (64, 64)  # call 2 works
    with pytest.raises(AdapterFault, match="disconnected"):
        faulty.acquire(CONFOCAL)
    with pytest.raises(AdapterFault, match="disconnected"):
        faulty.acquire(CONFOCAL)
    faulty.reconnect()
    assert faulty.acquire(CONFOCAL).data.shape == (64, 64)
    assert faulty.remodelling_onsets == [2]  # the simulator's ground truth shows through


# --- SpecPy ------------------------------------------------------------------------------------


class _Stack:
    def __init__(self, data):
        self._data = data

    def data(self):
        return self._data


class _Configuration:
    def __init__(self, name):
        self.name, self.parameters = name, {}

    def set_parameters(self, path, value):
        self.parameters[path] = value


class _Measurement:
    def __init__(self, imspector):
        self.imspector, self.active, self.parameters = imspector, None, {}
        self.configurations = {name: _Configuration(name) for name in ("Confocal", "STED 775")}
        self._stacks = {}

    def configuration(self, name):
        return self.configurations[name]

    def activate(self, configuration):
        self.active = configuration

    def set_parameters(self, path, value):
        self.parameters[path] = value

    def stack(self, index):
        return self._stacks[index]


class _Imspector:
    """Imspector as SpecPy shows it, scanning the simulator: offsets and lengths in metres."""

    def __init__(self, simulator, extra_line=False):
        self.simulator, self.extra_line = simulator, extra_line
        self.measurement = _Measurement(self)
        self.runs, self.stops = [], 0

    def active_measurement(self):
        return self.measurement

    def run(self, measurement):
        conf = measurement.active
        p = conf.parameters
        pixel = p["ExpControl/scan/range/x/psz"]
        width = round(p["ExpControl/scan/range/x/len"] / pixel)
        height = round(p["ExpControl/scan/range/y/len"] / pixel)
        field_h, field_w = self.simulator.capabilities().field_shape
        x0 = round(p["ExpControl/scan/range/x/off"] / pixel + field_w / 2 - width / 2)
        y0 = round(p["ExpControl/scan/range/y/off"] / pixel + field_h / 2 - height / 2)
        modality = STED if conf.name.startswith("STED") else CONFOCAL
        image, _ = self.simulator._acquire(modality, (y0, x0, height, width))
        if self.extra_line:
            image = np.concatenate([np.zeros((1, width), np.float32), image])
        self.runs.append((conf.name, (y0, x0, height, width)))
        measurement._stacks[0] = _Stack(image[None, None])  # Imspector stacks are 4D

    def stop(self, measurement):
        self.stops += 1


def _specpy_module(imspector):
    return types.SimpleNamespace(get_application=lambda: imspector)


SPECPY_SETTINGS = {CONFOCAL: AcquisitionSettings(5e-6, 0.0, 5e-6), STED: AcquisitionSettings(5e-6, 0.15, 5e-6)}


def test_specpy_adapter_sets_patch_geometry_runs_the_named_configuration_and_reads_the_stack():
    sim = SimulatorAdapter(n_frames=1, stimulus_frame=1, size=128, seed=5)
    imspector = _Imspector(sim, extra_line=True)
    adapter = SpecPyAdapter(
        configurations={CONFOCAL: "Confocal", STED: "STED 775"}, settings=SPECPY_SETTINGS, field_shape=(128, 128),
        pixel_size_nm=20.0, specpy=_specpy_module(imspector), min_patch=50,
        safe_parameters={"ExpControl/lasers/power_calibrated/3/value/calibrated": 0.0},
    )
    assert adapter.capabilities().requires_arming and not adapter.armed
    with pytest.raises(NotArmed):
        adapter.acquire(CONFOCAL)
    assert imspector.runs == []  # nothing reached the microscope
    adapter.arm()
    with pytest.raises(NanoscopyError, match="at least 50x50"):
        adapter.acquire(STED, (0, 0, 32, 32))
    frame = adapter.acquire(STED, (10, 70, 50, 52))
    assert imspector.runs[-1] == ("STED 775", (10, 70, 50, 52))  # the geometry round-trips through metres
    assert frame.data.shape == (50, 52)  # the discarded first line was dropped
    params = imspector.measurement.configurations["STED 775"].parameters
    assert params["ExpControl/scan/range/x/psz"] == pytest.approx(20e-9)
    assert params["ExpControl/scan/range/x/off"] == pytest.approx((70 + 26 - 64) * 20e-9)
    assert frame.parameters["configuration"] == "STED 775" and frame.parameters["depletion_w"] == 0.15
    full = adapter.acquire(CONFOCAL)
    assert full.data.shape == (128, 128) and imspector.runs[-1] == ("Confocal", (0, 0, 128, 128))
    adapter.close()
    assert imspector.measurement.parameters["ExpControl/lasers/power_calibrated/3/value/calibrated"] == 0.0


def test_specpy_adapter_refuses_arming_tricks_and_reports_a_missing_imspector():
    def unreachable():
        raise ConnectionError("no server")

    with pytest.raises(NanoscopyError, match="Could not reach Imspector"):
        SpecPyAdapter(configurations={CONFOCAL: "Confocal"}, settings=SPECPY_SETTINGS,
                      specpy=types.SimpleNamespace(get_application=unreachable))
    with pytest.raises(NanoscopyError, match="configurations maps"):
        SpecPyAdapter(configurations={"widefield": "W"}, settings=SPECPY_SETTINGS,
                      specpy=_specpy_module(object()))


# --- pymmcore-plus -----------------------------------------------------------------------------


def test_pymmcore_adapter_drives_a_real_unimmcore_with_a_simulated_camera():
    pytest.importorskip("pymmcore_plus")
    from napari_nanoscopy.live.pymmcore_adapter import PymmcoreAdapter, simulated_core

    sim = SimulatorAdapter(n_frames=1, stimulus_frame=1, size=64, seed=7)
    core = simulated_core(sim)
    assert type(core).__name__ == "UniMMCore"
    settings = {CONFOCAL: AcquisitionSettings(2e-6, 0.0, 1e-5), STED: AcquisitionSettings(2e-6, 0.15, 1e-5)}
    with pytest.raises(NanoscopyError, match="pixel size"):
        PymmcoreAdapter(core, settings=settings)
    with pytest.raises(NanoscopyError, match="no group 'Lasers'"):
        PymmcoreAdapter(core, settings=settings, group="Lasers", pixel_size_nm=20.0)
    adapter = PymmcoreAdapter(core, settings=settings, pixel_size_nm=20.0)
    assert adapter.capabilities().field_shape == (64, 64)
    with pytest.raises(NotArmed):
        adapter.acquire(CONFOCAL)
    adapter.arm()
    before = sim.fluorescent
    patch = adapter.acquire(STED, (16, 8, 16, 32))
    assert patch.data.shape == (16, 32) and patch.data.sum() > 0
    assert core.getProperty("Camera", "modality") == STED
    assert tuple(core.getROI()) == (0, 0, 64, 64)  # the ROI was cleared again
    after = sim.fluorescent
    assert after[16:32, 8:40].sum() < before[16:32, 8:40].sum()  # the patch was scanned in STED
    np.testing.assert_array_equal(after[40:], before[40:])  # and nothing else
    confocal = adapter.acquire(CONFOCAL)
    assert confocal.data.shape == (64, 64) and core.getProperty("Camera", "modality") == CONFOCAL
    adapter.close()
