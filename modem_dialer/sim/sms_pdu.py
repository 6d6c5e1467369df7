"""The simulator's own PDU encoder for what a network sends a modem: SMS-DELIVER (GSM 7-bit,
UCS-2, 8-bit; concatenated with 8- or 16-bit references) and SMS-STATUS-REPORT.

Deliberately separate from modems/sms_pdu.py (sim/ shares no code with modems/): if the
dialer's decoder and this encoder shared a table or a packing routine, a mistake in it would
go unnoticed. Written from 3GPP TS 23.040 9.2.2.1 / 9.2.3.24 and TS 23.038 6.2.1.
"""

from __future__ import annotations

_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
          "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_EXTENDED = "\f^{}\\[~]|€"
_EXT_CODES = (0x0A, 0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40, 0x65)
SMSC = "07913306091093F0"           # +33609001390, as a French SIM would have it


def septets_of(text: str) -> list[int]:
    out: list[int] = []
    for ch in text:
        i = _BASIC.find(ch)
        if i >= 0 and ch != "\x1b":
            out.append(i)
        elif ch in _EXTENDED:
            out += [0x1B, _EXT_CODES[_EXTENDED.index(ch)]]
        else:
            raise ValueError(f"{ch!r} is not in the GSM 7-bit alphabet")
    return out


def fits_gsm7(text: str) -> bool:
    try:
        septets_of(text)
        return True
    except ValueError:
        return False


def _pack(septets: list[int], shift: int) -> bytes:
    """Bit stream: ``shift`` zero bits, then 7 bits per septet, least significant first."""
    total = shift + 7 * len(septets)
    value = 0
    for i, s in enumerate(septets):
        value |= s << (shift + 7 * i)
    return value.to_bytes((total + 7) // 8, "little")


def _address(number: str) -> str:
    if not number:
        return "0081"                                   # no number: hidden caller
    digits = number.lstrip("+")
    if not digits.isdigit():                            # alphanumeric sender, 7-bit packed
        packed = _pack(septets_of(digits), 0)
        return f"{(len(digits) * 7 + 3) // 4:02X}D0" + packed.hex().upper()
    toa = "91" if number.startswith("+") else "81"
    d = digits + ("F" if len(digits) % 2 else "")
    return f"{len(digits):02X}{toa}" + "".join(d[i + 1] + d[i] for i in range(0, len(d), 2))


def _stamp() -> str:
    return "52301090000000"                             # 2025-03-01 09:00:00 +00:00, swapped BCD


def split(text: str, encoding: str, ref_bits: int) -> list[str]:
    """Cut like a phone does: 153/152 septets or 67/66 UTF-16 units per part, whole characters."""
    if encoding == "gsm7":
        cost = lambda ch: len(septets_of(ch))  # noqa: E731
        single, multi = 160, 153 if ref_bits == 8 else 152
    else:
        cost = lambda ch: 2 if ord(ch) > 0xFFFF else 1  # noqa: E731
        single, multi = 70, 67 if ref_bits == 8 else 66
    if sum(cost(c) for c in text) <= single:
        return [text]
    parts, cur, used = [], "", 0
    for ch in text:
        if used + cost(ch) > multi:
            parts.append(cur)
            cur, used = "", 0
        cur += ch
        used += cost(ch)
    return [*parts, cur] if cur else parts


def deliver_pdus(sender: str, text: str | bytes, *, encoding: str | None = None, ref_bits: int = 8,
                 reference: int = 1, dcs: int | None = None) -> list[str]:
    """SMS-DELIVER PDUs (hex, SMSC first) carrying ``text`` from ``sender`` ("" = hidden).
    ``dcs`` forces the data coding octet (to simulate an unknown encoding)."""
    if isinstance(text, bytes):
        encoding = "8bit"
    encoding = encoding or ("gsm7" if fits_gsm7(text) else "ucs2")   # type: ignore[arg-type]
    if encoding == "8bit":
        data = text if isinstance(text, bytes) else text.encode("latin-1")
        chunks: list = [data] if len(data) <= 140 else [data[i:i + 134] for i in range(0, len(data), 134)]
    else:
        assert isinstance(text, str)
        chunks = split(text, encoding, ref_bits)
    code = dcs if dcs is not None else {"gsm7": 0x00, "8bit": 0x04, "ucs2": 0x08}[encoding]
    out = []
    for n, chunk in enumerate(chunks, start=1):
        udh = b""
        if len(chunks) > 1:
            if ref_bits == 16:
                udh = bytes([6, 0x08, 4, (reference >> 8) & 0xFF, reference & 0xFF, len(chunks), n])
            else:
                udh = bytes([5, 0x00, 3, reference & 0xFF, len(chunks), n])
        if encoding == "gsm7":
            sept = septets_of(chunk)
            shift = (7 - len(udh) * 8 % 7) % 7 if udh else 0
            ud = udh + _pack(sept, shift)
            udl = (len(udh) * 8 + shift) // 7 + len(sept)
        else:
            body = chunk if isinstance(chunk, bytes) else chunk.encode("utf-16-be")
            ud = udh + body
            udl = len(ud)
        first = 0x04 | (0x40 if udh else 0)                 # SMS-DELIVER, no more messages to send
        tpdu = f"{first:02X}{_address(sender)}00{code:02X}{_stamp()}{udl:02X}" + ud.hex().upper()
        out.append(SMSC + tpdu)
    return out


def status_report_pdu(reference: int, recipient: str, status: int) -> str:
    """SMS-STATUS-REPORT for TP-MR ``reference`` (SMSC first)."""
    return SMSC + f"06{reference & 0xFF:02X}{_address(recipient)}{_stamp()}{_stamp()}{status & 0xFF:02X}"
