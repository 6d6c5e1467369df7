"""The ``sms:`` section of config.yaml: what incoming SMS mean (issue 13).

```yaml
sms:
  default_language: fr          # confirmation language when a keyword is shared (STOP)
  languages:
    fr:
      stop: [STOP, ARRET, STOP SMS, DESABONNER]
      ack: [ACK, OK, RECU]
      confirm: "Vous ne recevrez plus d'appels ni de SMS de notre part."
  parts_timeout: 3600           # s to wait for the missing parts of a long message
```

Keywords match the whole message, ignoring case, accents, spaces and end punctuation
("Arrêt." is ARRET). A configured language replaces the default one of that name; the
others stay.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import Field, field_validator, model_validator

from ..yamlfile import Strict


def normalise(text: str) -> str:
    """Upper case, no accents, single spaces, no punctuation at the ends: "  Arrêt ! " → "ARRET"."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    bare = re.sub(r"\s+", " ", bare).strip()
    bare = re.sub(r"^[^\w#]+|[^\w]+$", "", bare)
    return bare.upper()


class LanguageConfig(Strict):
    # Whole-message keywords that put the sender on the suppression list.
    stop: list[str] = Field(default_factory=list)
    # Whole-message words that acknowledge the alert last texted to the sender (with or
    # without the alert id after them: "ACK 42").
    ack: list[str] = Field(default_factory=list)
    # Sent back once the number is on the suppression list ("" sends nothing).
    confirm: str = ""

    @field_validator("stop", "ack")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        out = [normalise(w) for w in v]
        if any(not w for w in out):
            raise ValueError("a keyword is empty once case, accents and punctuation are removed")
        return out


DEFAULT_LANGUAGES: dict[str, LanguageConfig] = {
    "en": LanguageConfig(stop=["STOP", "STOP ALL", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOP SMS",
                               "OPT OUT", "OPTOUT"],
                         ack=["ACK", "ACKNOWLEDGE", "OK"],
                         confirm="You are unsubscribed: no more calls or messages from us."),
    "fr": LanguageConfig(stop=["STOP", "ARRET", "STOP SMS", "DESABONNER", "DESINSCRIRE", "STOP APPEL"],
                         ack=["ACK", "OK", "RECU", "PRIS"],
                         confirm="Vous êtes désinscrit : plus d'appels ni de SMS de notre part."),
    "de": LanguageConfig(stop=["STOP", "STOPP", "ABMELDEN"], ack=["ACK", "OK"],
                         confirm="Sie sind abgemeldet: keine Anrufe oder Nachrichten mehr von uns."),
    "es": LanguageConfig(stop=["STOP", "BAJA", "PARAR", "CANCELAR"], ack=["ACK", "OK"],
                         confirm="Se ha dado de baja: no recibirá más llamadas ni mensajes."),
}


class SmsConfig(Strict):
    default_language: str = "en"
    languages: dict[str, LanguageConfig] = Field(default_factory=dict)
    # s to wait for the missing parts of a concatenated message before storing what came
    parts_timeout: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _language(self) -> SmsConfig:
        if self.default_language not in self.all_languages():
            raise ValueError(f"default_language: {self.default_language!r} is not one of "
                             f"{', '.join(self.all_languages())}")
        return self

    def all_languages(self) -> dict[str, LanguageConfig]:
        return {**DEFAULT_LANGUAGES, **self.languages}
