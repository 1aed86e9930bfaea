"""The web request clock's oracle: the phase and deadline a connection's bytes leave, read by
h11 itself (uvicorn's parser), as :mod:`pillarbox.net.requestclock` did before it read the
framing on its own. The property tests and the fuzz target hold the clock to it."""

from __future__ import annotations

import h11

from pillarbox.net.requestclock import MAX_HEAD, Phase, RequestClock


class H11Clock:
    """The phase and deadline, read by feeding h11 and answering each request with an empty
    404 so that it reads the next one (a 2xx would accept a CONNECT's switch of protocols,
    which this app never answers so)."""

    def __init__(self, clock: RequestClock) -> None:
        self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.clock = clock  # for its deadline arithmetic only: its state is set from here

    def received(self, data: bytes, now: float) -> None:
        c = self.clock
        if c.phase is Phase.UNTIMED or not data:
            return
        if c.phase is Phase.BETWEEN:
            c.phase, c._started = Phase.HEAD, now
        c._last = now
        self.parser.receive_data(data)
        try:
            while c.phase is not Phase.UNTIMED:
                event = self.parser.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.Request):
                    c.phase, c._started, c._body_bytes = Phase.BODY, now, 0
                elif isinstance(event, h11.Data):
                    c._body_bytes += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.parser.send(
                        h11.Response(status_code=404, headers=[("content-length", "0")])
                    )
                    self.parser.send(h11.EndOfMessage())
                    if self.parser.our_state is not h11.DONE:
                        c.phase = Phase.UNTIMED
                        return
                    self.parser.start_next_cycle()
                    pending = bool(self.parser.trailing_data[0])
                    c.phase, c._started = (Phase.HEAD if pending else Phase.BETWEEN), now
                else:
                    c.phase = Phase.UNTIMED
        except h11.ProtocolError:
            c.phase = Phase.UNTIMED
