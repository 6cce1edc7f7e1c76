"""The trip of ``trip_booking.py`` as a code-first workflow awaiting its hotel as a child.

``PlanTrip`` holds a seat, then starts a ``BookHotel`` task (the saga of ``trip_booking.py``)
with ``wf.child`` and awaits its response, then charges the trip. The saga by try/except:

- the hotel fails (``fail_confirm=true``): the child compensated itself and the await raises
  ``ChildFailed`` (a ``StepFailed``): the seat is released, the trip fails;
- the charge fails (``fail_charge=true``): the completed hotel is undone with
  ``wf.compensate_child`` (the child compensates ConfirmRoom, then ReserveRoom, and ends
  Cancelled), then the seat is released;
- the trip is cancelled while the hotel is booked (``hold_seconds``): the running child is
  cancelled (it compensates itself); the body waits for it to end, then releases the seat.

The steps write to the trip ledger (bucket ``trip-booking``) like the saga's. Enable it with
``TASKSAGA_TASK_MODULES=...,tasksaga_examples.trip_booking,tasksaga_examples.trip_workflow``
(queue ``trips``): the child's type must be deployed too.
"""

from __future__ import annotations

from contextlib import suppress

from tasksaga.core import NonRetryableError, StepContext
from tasksaga.workflow import (
    ChildFailed,
    StepFailed,
    WorkflowCancelled,
    WorkflowContext,
    step,
    workflow,
)
from tasksaga_examples import trip_booking as trips


@step(queue=trips.QUEUE)
def hold_seat(ctx: StepContext[trips.TripRequest], trip: trips.TripRequest) -> trips.Seat:
    seat = trips.Seat(seat_id=f"seat-{trip.trip_id}")
    trips.record_in_ledger(ctx, "seat", seat)
    return seat


@step(queue=trips.QUEUE)
def release_seat(ctx: StepContext[trips.TripRequest], seat: trips.Seat) -> None:
    ctx.store.delete(trips.LEDGER_BUCKET, trips.ledger_key(ctx.task_id, "seat"))


@step(queue=trips.QUEUE)
def charge_trip(ctx: StepContext[trips.TripRequest],
                trip: trips.TripRequest) -> trips.Payment:
    if trip.fail_charge:
        raise NonRetryableError(f"card declined for {trip.amount_cents} cents")
    payment = trips.Payment(payment_id=f"pay-{ctx.step_key}")
    trips.record_in_ledger(ctx, "payment", payment)
    return payment


@workflow("PlanTrip", queue=trips.QUEUE, request=trips.TripRequest,
          response=trips.TripBooked, timeout_seconds=900, step_timeout_seconds=120)
async def plan_trip(wf: WorkflowContext, trip: trips.TripRequest) -> trips.TripBooked:
    seat = await wf.step(hold_seat, trip)
    hotel = wf.child(trips.book_hotel, trips.HotelRequest(
        trip_id=trip.trip_id, city=trip.city, nights=trip.nights, seat_id=seat.seat_id,
        hold_seconds=trip.hold_seconds, fail_confirm=trip.fail_confirm))
    try:
        booked = await hotel  # the child's response, a HotelBooked
        payment = await wf.step(charge_trip, trip)
    except (StepFailed, WorkflowCancelled):  # ChildFailed is a StepFailed
        with wf.shield():
            if hotel.completed:
                await wf.compensate_child(hotel)  # the hotel undoes its own steps
            elif wf.cancelled:
                with suppress(ChildFailed):  # cancelled with us: wait until it undid itself
                    await hotel
            await wf.step(release_seat, seat)
        raise
    return trips.TripBooked(trip_id=trip.trip_id, seat_id=seat.seat_id,
                            room_id=booked.room_id, payment_id=payment.payment_id)
