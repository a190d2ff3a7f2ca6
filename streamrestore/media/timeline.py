"""Repairs input timestamps that step backwards, as files joined with ``cat`` or a restarted recorder give.

Two MPEG-TS files concatenated byte for byte play in most players (each part is decoded in turn), but
their timestamps start again from the same clock value half way through: a muxer refuses such packets,
and an encoder given frames whose times go back writes nonsense. FFmpeg's command line repairs this for
formats that allow discontinuities (``ffmpeg_demux.c``, ``ts_discontinuity_detect``) by shifting what
follows so that it continues the timeline; this does the same for every input, per part:

- A stream whose decode timestamp steps back (below its previous packet's) has entered a new part.
- The first stream to enter part *k* fixes that part's offset: the part starts where the longest audio
  or video stream of the previous part ended. Its other streams have not been read yet, so the part's
  layout is taken from the previous one: if audio started 20 ms before the video there, the part is
  placed 20 ms later, so that its audio does not overlap the audio before it. Every stream adds the
  same offset once it enters part
  *k* itself, so the streams of one part keep their relative timing (audio stays in sync with its video),
  and packets of a slower stream still belonging to the previous part keep the previous offset.
- A stream whose new part would still start before its own previous packet (it began earlier in its
  part than the stream that fixed the offset) is moved just past it; that residual shift is reported.

Packets are changed in place before they are decoded or copied, so frames, copies and the frame count
checks all see the repaired times. Forward jumps (gaps) are left alone: they are valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av


@dataclass
class _StreamState:
    part: int = 0
    last: Fraction | None = None
    """Decode time of the stream's previous packet, repaired (seconds)."""
    end: Fraction | None = None
    """The latest presentation end (pts + duration) of the stream so far, repaired (seconds)."""
    extra: Fraction = Fraction(0)
    """This stream's own shift on top of its part's offset (residual overlap)."""
    first: Fraction | None = None
    """The earliest presentation time of the stream in its current part, as in the file (seconds)."""


@dataclass(frozen=True)
class Jump:
    """One place where the input's timestamps went back."""

    at: Fraction
    """Input time (seconds, as the file says) where the new part starts."""
    back: Fraction
    """How far the timestamps stepped back (seconds)."""
    shift: Fraction
    """What was added to the new part's timestamps (seconds)."""


@dataclass
class TimestampRepair:
    """Shifts each packet so that every stream's decode times only go forward (see the module doc)."""

    offsets: list[Fraction] = field(default_factory=lambda: [Fraction(0)])
    jumps: list[Jump] = field(default_factory=list)
    residual: Fraction = Fraction(0)
    """The largest extra shift one stream needed beyond its part's offset (0 when sync is exact)."""
    _streams: dict[int, _StreamState] = field(default_factory=dict)

    def fix(self, packet: av.Packet) -> None:
        """Repair ``packet``'s pts/dts in place (empty end-of-stream packets are left alone)."""
        if packet.size == 0 or packet.time_base is None:
            return
        if packet.dts is None and packet.pts is None:
            return
        base = packet.time_base
        state = self._streams.setdefault(packet.stream.index, _StreamState())
        # Only decode timestamps must go forward (presentation ones are reordered by B-frames). A packet
        # without one (Matroska leaves the first ones of a B-frame stream unset) is shifted, not judged.
        raw = packet.dts * base if packet.dts is not None else None
        start = packet.pts * base if packet.pts is not None else raw
        if raw is not None and state.last is not None and raw + self._shift(state) < state.last:
            self._enter_next_part(state, raw, start)
        if packet.stream.type in ("audio", "video"):
            state.first = start if state.first is None else min(state.first, start)
        shift = self._shift(state)
        if shift:
            ticks = round(shift / base)
            if packet.pts is not None:
                packet.pts += ticks
            if packet.dts is not None:
                packet.dts += ticks
        if raw is not None:
            state.last = raw + shift
        if packet.stream.type in ("audio", "video"):
            end = start + shift + (packet.duration or 0) * base
            state.end = end if state.end is None else max(state.end, end)

    def _shift(self, state: _StreamState) -> Fraction:
        return self.offsets[state.part] + state.extra

    def _enter_next_part(self, state: _StreamState, raw: Fraction, start: Fraction) -> None:
        """``raw``: the packet's decode time; ``start``: its presentation time (both as in the file)."""
        back = state.last - (raw + self._shift(state))
        firsts = [s.first for s in self._streams.values() if s.first is not None]
        lead = state.first - min(firsts) if state.first is not None and firsts else Fraction(0)
        state.part += 1
        state.extra = Fraction(0)
        state.first = None
        if state.part == len(self.offsets):
            # This stream is the first into the new part: the part is shown from where the previous
            # one ended (the latest end of its audio and video).
            ends = [s.end for s in self._streams.values() if s.end is not None]
            previous_end = max(ends) if ends else state.last
            self.offsets.append(previous_end - start + lead)
            self.jumps.append(Jump(at=start, back=back, shift=self.offsets[-1]))
        if raw + self._shift(state) <= state.last:
            # It began its part earlier than the stream that fixed the offset: just past its last packet.
            step = max(state.end - state.last, Fraction(1, 1000)) if state.end is not None else Fraction(1, 1000)
            state.extra = state.last + step - (raw + self.offsets[state.part])
            self.residual = max(self.residual, state.extra)

    def describe(self) -> str | None:
        """One line for the user, or None when the timestamps never went back."""
        if not self.jumps:
            return None
        first = self.jumps[0]
        times = "" if len(self.jumps) == 1 else f", {len(self.jumps)} times"
        sync = ("audio and video kept in sync" if not self.residual
                else f"audio and video kept in sync within {float(self.residual) * 1000:.0f} ms")
        return (f"the input's timestamps go back by {float(first.back):.3f} s{times} (files joined end to end?): "
                f"the part after the {'first ' if self.jumps[1:] else ''}jump now plays from "
                f"{float(first.at + first.shift):.3f} s, right after the part before it; {sync}")
