"""Trip booking: a parent saga with a child task, and a depends_on chain.

``BookTrip`` holds a seat, then its child step ``Hotel`` starts a ``BookHotel`` task (reserve a
room, confirm it) with a request built from the trip's request and the seat it held, waits for
it and takes its response as the step's data; then it charges the trip. ``IssueItinerary``
``depends_on`` BookTrip: each completed trip starts one, with the trip's response as request.

- ``fail_charge=true``: ChargeTrip fails for good after the hotel was booked, so the trip
  compensates in reverse: the completed BookHotel child compensates its own steps (the room is
  cancelled), then the seat is released. Both tasks end Cancelled/Failed; no itinerary.
- ``fail_confirm=true``: the child fails (and compensates itself); the child step fails, the
  seat is released, the trip ends Failed.
- ``hold_seconds``: ConfirmRoom takes that long (heartbeating, stopping when told to), which
  leaves time to cancel the trip while its child runs: the child is cancelled and compensated
  before the seat is released.

Every effect is a JSON record in the ``trip-booking`` bucket under the task's id (deleted by
its compensation). Enable it with ``TASKSAGA_TASK_MODULES=...,tasksaga_examples.trip_booking``
(queue ``trips``).
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from pydantic import BaseModel, Field

from tasksaga.core import (
    NonRetryableError,
    SagaContext,
    StepCancelled,
    StepContext,
    TaskDefinition,
)

LEDGER_BUCKET = "trip-booking"
QUEUE = "trips"


class HotelRequest(BaseModel):
    trip_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    city: str = Field(min_length=1, max_length=64)
    nights: int = Field(ge=1, le=30)
    seat_id: str
    hold_seconds: float = Field(default=0.0, ge=0, le=60)
    fail_confirm: bool = False


class Room(BaseModel):
    room_id: str


class Confirmation(BaseModel):
    confirmation: str


class HotelBooked(BaseModel):
    room_id: str
    confirmation: str


class TripRequest(BaseModel):
    trip_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    city: str = Field(min_length=1, max_length=64)
    nights: int = Field(ge=1, le=30)
    amount_cents: int = Field(ge=1)
    hold_seconds: float = Field(default=0.0, ge=0, le=60)
    fail_confirm: bool = False
    fail_charge: bool = False


class Seat(BaseModel):
    seat_id: str


class Payment(BaseModel):
    payment_id: str


class TripBooked(BaseModel):
    trip_id: str
    seat_id: str
    room_id: str
    payment_id: str


class Itinerary(BaseModel):
    key: str


class ItineraryIssued(BaseModel):
    trip_id: str
    itinerary_key: str


def ledger_key(task_id: str, record: str) -> str:
    return f"{task_id}/{record}.json"


def record_in_ledger(ctx: StepContext[Any], record: str, body: BaseModel) -> None:
    ctx.store.put_stream(LEDGER_BUCKET, ledger_key(ctx.task_id, record),
                         BytesIO(json.dumps(body.model_dump()).encode()), "application/json")


def _erase(ctx: StepContext[Any], record: str) -> None:
    ctx.store.delete(LEDGER_BUCKET, ledger_key(ctx.task_id, record))


# -- the child: BookHotel ------------------------------------------------------------------------

book_hotel = TaskDefinition("BookHotel", queue=QUEUE, request=HotelRequest,
                            response=HotelBooked, max_retries=1, timeout_seconds=600,
                            step_timeout_seconds=120)


@book_hotel.step("ReserveRoom", order=1, reads=())
def reserve_room(ctx: StepContext[HotelRequest]) -> Room:
    room = Room(room_id=f"room-{ctx.request.trip_id}-{ctx.request.city.lower()}")
    record_in_ledger(ctx, "room", room)
    return room


@book_hotel.compensation("ReserveRoom")
def cancel_room(ctx: StepContext[HotelRequest], room: Room) -> None:
    _erase(ctx, "room")


@book_hotel.step("ConfirmRoom", order=2, reads=("ReserveRoom",), heartbeat_timeout_seconds=30)
def confirm_room(ctx: StepContext[HotelRequest]) -> Confirmation:
    remaining = ctx.request.hold_seconds
    while remaining > 0:  # a slow hotel system, which stops when told to
        ctx.heartbeat(None, f"waiting for the hotel ({remaining:g} s left)")
        if ctx.cancelled is not None and ctx.cancelled.wait(min(remaining, 0.5)):
            raise StepCancelled(f"{ctx.step} stopped: the task no longer needs it")
        remaining -= 0.5
    if ctx.request.fail_confirm:
        raise NonRetryableError(f"the hotel in {ctx.request.city} refused the booking")
    confirmation = Confirmation(confirmation=f"conf-{ctx.data(Room).room_id}")
    record_in_ledger(ctx, "confirmation", confirmation)
    return confirmation


@book_hotel.compensation("ConfirmRoom")
def cancel_confirmation(ctx: StepContext[HotelRequest], confirmation: Confirmation) -> None:
    _erase(ctx, "confirmation")


@book_hotel.response_builder
def hotel_booked(ctx: SagaContext[HotelRequest]) -> HotelBooked:
    return HotelBooked(room_id=ctx.data(Room).room_id,
                       confirmation=ctx.data(Confirmation).confirmation)


# -- the parent: BookTrip ------------------------------------------------------------------------

book_trip = TaskDefinition("BookTrip", queue=QUEUE, request=TripRequest, response=TripBooked,
                           max_retries=1, timeout_seconds=900, step_timeout_seconds=120)


@book_trip.step("HoldSeat", order=1, reads=())
def hold_seat(ctx: StepContext[TripRequest]) -> Seat:
    seat = Seat(seat_id=f"seat-{ctx.request.trip_id}")
    record_in_ledger(ctx, "seat", seat)
    return seat


@book_trip.compensation("HoldSeat")
def release_seat(ctx: StepContext[TripRequest], seat: Seat) -> None:
    _erase(ctx, "seat")


def hotel_request(ctx: SagaContext[TripRequest]) -> HotelRequest:
    """The child's request: the trip's city and nights, and the seat HoldSeat held."""
    trip = ctx.request
    return HotelRequest(trip_id=trip.trip_id, city=trip.city, nights=trip.nights,
                        seat_id=ctx.data(Seat).seat_id, hold_seconds=trip.hold_seconds,
                        fail_confirm=trip.fail_confirm)


book_trip.child_step("Hotel", order=2, task=book_hotel, request=hotel_request)


@book_trip.step("ChargeTrip", order=3, reads=())
def charge_trip(ctx: StepContext[TripRequest]) -> Payment:
    if ctx.request.fail_charge:
        raise NonRetryableError(f"card declined for {ctx.request.amount_cents} cents")
    payment = Payment(payment_id=f"pay-{ctx.step_key}")
    record_in_ledger(ctx, "payment", payment)
    return payment


@book_trip.compensation("ChargeTrip")
def refund_trip(ctx: StepContext[TripRequest], payment: Payment) -> None:
    _erase(ctx, "payment")


@book_trip.response_builder
def trip_booked(ctx: SagaContext[TripRequest]) -> TripBooked:
    return TripBooked(trip_id=ctx.request.trip_id, seat_id=ctx.data(Seat).seat_id,
                      room_id=ctx.data(HotelBooked).room_id,
                      payment_id=ctx.data(Payment).payment_id)


# -- downstream: IssueItinerary (depends_on BookTrip) --------------------------------------------

issue_itinerary = TaskDefinition("IssueItinerary", queue=QUEUE, request=TripBooked,
                                 response=ItineraryIssued, depends_on=book_trip,
                                 max_retries=1, step_timeout_seconds=60)


@issue_itinerary.step("WriteItinerary", order=1, reads=())
def write_itinerary(ctx: StepContext[TripBooked]) -> Itinerary:
    itinerary = Itinerary(key=ledger_key(ctx.task_id, "itinerary"))
    record_in_ledger(ctx, "itinerary", ctx.request)
    return itinerary


@issue_itinerary.response_builder
def itinerary_issued(ctx: SagaContext[TripBooked]) -> ItineraryIssued:
    return ItineraryIssued(trip_id=ctx.request.trip_id, itinerary_key=ctx.data(Itinerary).key)
