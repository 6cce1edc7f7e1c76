"""Task types for the security tests: JSON requests with nested models, and roles."""

from __future__ import annotations

from pydantic import BaseModel

from tasksaga.core import CallbackUrl, StepContext, TaskDefinition


class Address(BaseModel):
    city: str
    zip_code: str = "00000"


class GreetRequest(BaseModel):
    name: str
    express: bool = False
    address: Address | None = None
    hook: CallbackUrl | None = None


class Greeting(BaseModel):
    text: str


greet = TaskDefinition("Greet", queue="security", request=GreetRequest,
                       roles={"submit": ["greeter"]}, cancellable=True)


@greet.step("SayHello", order=1)
def say_hello(ctx: StepContext[GreetRequest]) -> Greeting:
    return Greeting(text=f"hello {ctx.request.name}")


class OpenRequest(BaseModel):
    note: str


lenient = TaskDefinition("Lenient", queue="security", request=OpenRequest,
                         allow_extra_fields=True)


@lenient.step("Note", order=1)
def note(ctx: StepContext[OpenRequest]) -> None:
    return None


class WaitRequest(BaseModel):
    seconds: float = 60.0


slow = TaskDefinition("Slow", queue="security", request=WaitRequest, cancellable=True)


@slow.step("Wait", order=1, timeout_seconds=120)
def wait(ctx: StepContext[WaitRequest]) -> None:
    if ctx.cancelled is not None:
        ctx.cancelled.wait(ctx.request.seconds)
    if ctx.is_cancelled():
        from tasksaga.core import StepCancelled

        raise StepCancelled("cancelled while waiting")
