"""Readiness checks: data dirs writable, free disk above the floor, every analyzer loaded."""

from __future__ import annotations

from app.analyzers.registry import AnalyzerRegistry
from app.analyzers.skin import SkinAnalyzer
from app.composition import build_container
from app.services.readiness import readiness_checks
from app.services.readiness_settings import ReadinessSettings


def test_ready_when_everything_is_in_place(settings) -> None:
    build_container(settings, AnalyzerRegistry([SkinAnalyzer()])).close()  # creates the dirs
    checks = {
        c.name: c
        for c in readiness_checks(
            ReadinessSettings.from_settings(settings), AnalyzerRegistry([SkinAnalyzer()])
        )
    }
    assert set(checks) == {"data_dir_writable", "free_disk", "analyzers_loaded"}
    assert all(c.ok for c in checks.values())
    assert checks["analyzers_loaded"].detail == "loaded: skin"


def test_an_unloaded_analyzer_or_a_disk_floor_fails(make_settings) -> None:
    settings = make_settings(min_free_disk_bytes=2**62)
    build_container(settings, AnalyzerRegistry([SkinAnalyzer()])).close()
    registry = AnalyzerRegistry([SkinAnalyzer()], unavailable={"classify": "model file missing"})
    checks = {c.name: c for c in readiness_checks(ReadinessSettings.from_settings(settings), registry)}
    assert not checks["free_disk"].ok
    assert not checks["analyzers_loaded"].ok
    assert "classify (model file missing)" in checks["analyzers_loaded"].detail


def test_missing_data_dirs_are_not_writable(settings) -> None:
    settings.data_dir.mkdir(parents=True)
    checks = {
        c.name: c
        for c in readiness_checks(
            ReadinessSettings.from_settings(settings), AnalyzerRegistry([SkinAnalyzer()])
        )
    }
    assert not checks["data_dir_writable"].ok
