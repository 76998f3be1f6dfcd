"""The recovery flow's routes under /recover: the generic runner over its steps (made per
app: the step list follows a setting), plus the password meter's endpoint."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from provider.flows import runner
from provider.limits import limiter, strength_limit
from provider.recovery import flow
from provider.recovery.state import RecoveryData
from provider.recovery.steps import new_password
from provider.services import Services


def install(app: Flask, svc: Services) -> None:
    definition = flow.definition(asks_birth_date=svc.settings.recovery_asks_birth_date)
    routes: runner.FlowRoutes[RecoveryData] = runner.FlowRoutes(definition)

    @routes.bp.post("/new-password/strength")
    @limiter.limit(strength_limit)
    def password_strength() -> ResponseReturnValue:
        state = routes.current_flow()
        if state.step != new_password.NewPasswordStep.name:
            return jsonify(error="not at the password step"), 409
        step = definition.by_name[state.step]
        return new_password.strength_verdict(routes.visit(state, step))

    engine = flow.make_engine(
        definition,
        svc.sessions,
        svc.hasher,
        idle=timedelta(minutes=svc.settings.flow_idle_minutes),
        reads=svc.reads,
    )
    runner.install(app, routes, engine)
