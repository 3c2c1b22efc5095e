"""Hand-written rules for prompt injection, jailbreak templates and instructions hidden in data.

Each rule is a named regular expression over the detection view (case-insensitive, whitespace
runs matched by ``\\s+``), with the category it reports, the directions it applies to and a
score. They catch the known phrasings exactly and explainably ("ignore previous instructions",
DAN and its siblings, "in your reply, add …"); the trained classifier
(``isthmus.guard.classifier``) catches the paraphrases. Encoded payloads are decoded
(base64, hex) and the decoded text is checked by the same rules.

Invariant: rules are data (``RULES``); the inspectors only run them. The rules were written
from the *training* split of the corpus (the context rules also from the attacks the classifier
missed on the validation split) and general knowledge of published attacks; the bench reports
them on the validation and test splits.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from isthmus.guard.findings import Direction, Finding, InspectionContext
from isthmus.guard.prefilter import Prefilter

__all__ = ["RULES", "IndirectInjectionRules", "InjectionRules", "Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    pattern: re.Pattern[str]
    directions: frozenset[Direction]
    score: float = 0.95
    needles: tuple[str, ...] = ()
    """Lower-case substrings of which at least one must occur for the pattern to be tried
    (a cheap pre-filter: most texts skip most rules without running a regex)."""


_INPUT_AND_CONTEXT: frozenset[Direction] = frozenset({"input", "context"})
_CONTEXT: frozenset[Direction] = frozenset({"context"})


def _rule(
    rule_id: str,
    needles: tuple[str, ...],
    category: str,
    pattern: str,
    directions: frozenset[Direction] = _INPUT_AND_CONTEXT,
    score: float = 0.95,
) -> Rule:
    compiled = re.compile(pattern.replace(" ", r"\s+"), re.IGNORECASE)
    return Rule(rule_id, category, compiled, directions, score, needles)


_PRIOR = r"(?:all |any |the |your |my |these |those |of )*(?:previous|prior|above|earlier|preceding|initial|original|system|old)"
_ORDERS = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|context|programming|constraints)"

RULES: tuple[Rule, ...] = (
    _rule("injection.ignore_previous", ('ignore', 'disregard', 'forget', 'skip', 'override', 'bypass', 'drop'), "prompt_injection",
          rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop) (?:about |of )?{_PRIOR} {_ORDERS}"),
    _rule("injection.ignore_everything", ('ignore', 'disregard', 'forget'), "prompt_injection",
          r"\b(?:ignore|disregard|forget) (?:everything|all|anything) (?:you were |you've been |that was |i )?(?:told|said|instructed|above|before)"),
    _rule("injection.new_instructions", ('instruction',), "prompt_injection",
          r"(?:^|\n)\s*(?:new|updated|real|actual|revised) (?:system )?instructions?\s*:"),
    _rule("injection.role_override", ('from now on', 'henceforth', 'rest of this conversation'), "prompt_injection",
          r"\b(?:from now on|henceforth|for the rest of this conversation),? you (?:are|will|must|shall) (?:no longer|now|act|behave|respond|be)"),
    _rule("injection.reveal_prompt", ('prompt', 'instructions'), "prompt_injection",
          r"\b(?:reveal|show|print|repeat|output|display|leak|tell me|give me|write out|recite) (?:me )?(?:your|the|all|any)(?: \w+){0,2} (?:system prompt|initial (?:prompt|instructions)|hidden (?:prompt|instructions)|secret instructions|developer (?:prompt|message)|instructions above|prompt above)"),
    _rule("injection.chat_markup", ('<|', 'inst]', '<<sys', '<</sys', '##'), "prompt_injection",
          r"<\|(?:im_start|im_end|system|endoftext|start_header_id|eot_id)\|>|\[/?INST\]|<</?SYS>>|(?:^|\n)#{2,} ?(?:system|instruction)s?:?\s*\n"),
    _rule("injection.system_impersonation", ('system', 'admin', 'developer', 'root'), "prompt_injection",
          r"(?:^|\n)\s*(?:\[|\()?(?:system|admin|developer|root)(?: message| override| notice)?(?:\]|\))?\s*:\s*(?:you|ignore|disregard|new|the assistant|override)"),
    _rule("injection.decode_and_follow", ('base64', 'base-64', 'hex', 'rot13', 'rot-13', 'binary', 'morse'), "prompt_injection",
          r"\b(?:decode|decrypt|translate|convert) (?:the |this )?(?:following )?(?:base64|base-64|hex|rot13|rot-13|binary|morse)\b.{0,80}\b(?:follow|execute|obey|do what|carry out|respond to)"),
    _rule("jailbreak.dan", ('dan', 'stan', 'dude', 'aim', 'apophis', 'antigpt', 'evilbot', 'ucar', 'kevin', 'do anything now'), "jailbreak",
          r"\b(?:DAN|STAN|DUDE|AIM|APOPHIS|BetterDAN|AntiGPT|EvilBOT|UCAR|KEVIN)\b.{0,120}\b(?:stands for|do anything now|strive to avoid norms|always intelligent and machiavellian|no (?:restrictions|limits|filters|rules))|\bdo anything now\b"),
    _rule("jailbreak.developer_mode", (' mode',), "jailbreak",
          r"\b(?:developer|dev|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|opposite|evil|chaos|debug) mode\b.{0,60}\b(?:enabled|activated|on|engaged|you will|simulate)|\benable (?:developer|dev|god|jailbreak) mode\b"),
    _rule("jailbreak.no_restrictions", ('guideline', 'restriction', 'filter', 'limitation', 'boundar', 'polic', 'rules', 'censorship', 'constraint', 'principle'), "jailbreak",
          r"\b(?:without|free (?:of|from)|no|not bound by|freed from|broken free of|doesn't have|does not have|don't have|has no|have no|not have any) (?:any )?(?:ethical|moral|safety|content|openai'?s?|ai)? ?(?:guidelines|restrictions|filters|limitations|boundaries|policies|rules|censorship|constraints|principles)\b.{0,80}\b(?:respond|answer|chatbot|ai|assistant|character|model|you)",
          score=0.45),
    _rule("jailbreak.amoral_persona", ('unfiltered', 'amoral', 'unethical', 'uncensored', 'unrestricted'), "jailbreak",
          r"\b(?:unfiltered|amoral|unethical|uncensored|unrestricted) (?:and (?:amoral|unfiltered|unethical) )?(?:chatbot|ai|assistant|model|persona|character|version)",
          score=0.45),
    _rule("jailbreak.never_refuse", ('refuse', 'decline', 'say no', 'reject', 'phrases like', 'responses'), "jailbreak",
          r"\b(?:never|will not|won't|must not|cannot|can't|do not|don't) (?:ever )?(?:refuse|decline|say no|reject)(?: to)?(?: answer| respond| a request| any request| anything)?.{0,60}\b(?:no matter|regardless|however|even if)|\bnever (?:ever )?use phrases like\b|\bnone of (?:your|\w+'s) responses (?:will|should) contain\b"),
    _rule("jailbreak.stay_in_character", ('character',), "jailbreak",
          r"\b(?:stay|remain|keep) in character\b|\bbreak(?:ing)? character\b.{0,60}\b(?:never|don't|do not|will)",
          score=0.45),
    _rule("jailbreak.dual_response", ('responses', 'answers', 'paragraphs', 'outputs'), "jailbreak",
          r"\b(?:two|2|both) (?:different |separate )?(?:responses|answers|paragraphs|outputs)\b.{0,120}\b(?:normal|classic|standard|filtered)\b.{0,120}\b(?:jailbreak|dan|unfiltered|developer mode|opposite|evil)"),
    _rule("jailbreak.forced_prefix", ('start your', 'begin your'), "jailbreak",
          r"\b(?:start|begin) your (?:response|reply|answer) (?:with|using)\b.{0,60}\b(?:sure,? here|exact structure|following exact)|\bstart your response using the following exact structure\b"),
    _rule("jailbreak.hypothetical_unlock", ('implications', 'considerations', 'concerns', 'guidelines'), "jailbreak",
          r"\b(?:ignoring|ignore|disregard|setting aside) (?:any|all) (?:moral|ethical|legal)(?: or (?:moral|ethical|legal))? (?:implications|considerations|concerns|guidelines)"),
    # Instructions planted in data: addressed to the model, about its own reply.
    _rule("indirect.about_your_reply", ('your respon', 'your repl', 'your answer', 'your output', 'your summar'), "indirect_injection",
          r"\b(?:in|into|to|within|throughout|at the (?:end|start|beginning) of) your (?:response|reply|answer|output|summary|responses|replies|answers)\b",
          _CONTEXT, 0.9),
    _rule("indirect.your_reply_verb", ('your respon', 'your repl', 'your answer', 'your output'), "indirect_injection",
          r"\byour (?:response|reply|answer|output)s? (?:should|must|needs to|has to|will) ",
          _CONTEXT, 0.9),
    _rule("indirect.address_the_model", ('ai', 'llm', 'language model', 'assistant', 'chatbot', 'gpt', 'claude', 'copilot'), "indirect_injection",
          r"\b(?:(?:dear|attention|hey|note to (?:the )?)\s*)?(?:ai|llm|language model|assistant|chatbot|gpt|claude|copilot)s?(?: model)?,? (?:please )?(?:you must|you should|ignore|disregard|make sure|be sure|do not|don't|always|instead)\b",
          _CONTEXT, 0.9),
    _rule("indirect.code_insertion", ('snippet', 'block', 'excerpt', 'section', 'segment', 'fragment', 'code'), "indirect_injection",
          r"\b(?:following|subsequent|below|this|provided) (?:code |python )?(?:snippet|block|excerpt|section|segment|fragment|code)\b.{0,60}\b(?:your|the) (?:code|implementation|solution|codebase|program|script|answer|response|algorithm|elucidation)\b|\b(?:subsequent|following) code (?:snippet|excerpt|block|section)\b|\b(?:incorporate|integrate|include|embed|insert|merge|append|enlist|utilize|add|execute|meld|fold) (?:the |this )?(?:following|subsequent|below|above)\b.{0,40}\b(?:code|snippet|block|excerpt)",
          _CONTEXT, 0.9),
    _rule("indirect.verb_your_reply", ('your ',), "indirect_injection",
          r"(?:^|[.!?:\n]\s*)(?:please )?(?:augment|enhance|modify|enrich|provide|render|scramble|format|structure|end|begin|start|conclude|finish|sign|update|adjust|alter|change|tailor|let|write|deliver|compose|craft|present|express|make) your (?:\w+ ){0,2}(?:answer|reply|response|message|output|code|algorithm|elucidation|solution|summary)",
          _CONTEXT, 0.9),
    _rule("indirect.modify_reply", ('your respon', 'your repl', 'your answer', 'your output'), "indirect_injection",
          r"\b(?:replace|remove|rearrange|misspell|introduce|group|reverse|encode|translate|rewrite|format) (?:\w+ ){0,4}(?:in|of|from|throughout) your (?:response|reply|answer|output)",
          _CONTEXT, 0.9),
    _rule("indirect.text_manipulation", ('every', 'each', 'letters', 'vowels', 'consonants'), "indirect_injection",
          r"\b(?:replace|substitute|swap|misspell|scramble|rearrange|anagram|reverse|capitali[sz]e|remove|omit|duplicate) (?:\w+ ){0,2}(?:every|each) (?:other|second|third|fourth|fifth|sixth|\d+(?:st|nd|rd|th)) (?:letter|word|vowel|consonant|character|sentence)s?\b|\b(?:replace|substitute|swap) (?:all |the )?(?:letters|vowels|consonants) (?:with|by|for) (?:numbers|digits|symbols|emojis)\b|\buse (?:numbers|digits|symbols|emojis) (?:for|instead of) (?:letters|vowels|consonants)\b",
          _CONTEXT, 0.9),
    # A task for the model, sentence-initial (weak alone: e-mails ask people for things too).
    _rule("indirect.task_request", ('write', 'draft', 'compose', 'develop', 'create', 'generate', 'produce', 'prepare', 'craft', 'provide', 'outline', 'summar', 'describe', 'explain', 'translate', 'break down', 'tell me', 'show me', 'give me'), "indirect_injection",
          r"(?:^|[.!?:\n]\s*)(?:please |kindly |now |also )?(?:write|draft|compose|develop|create|generate|produce|prepare|craft|provide|outline|summari[sz]e|describe|explain|translate|break down|tell me|show me|give me) (?:me |us )?(?:a |an |the |some |\d+ )?(?:\w+ ){0,3}(?:essay|poem|story|introduction|article|blog post|speech|haiku|song|limerick|joke|tweet|slogan|plot|theory|lifecycle|life cycle|history|meaning|process|recipe)s?\b",
          _CONTEXT, 0.45),
    _rule("indirect.hidden_from_user", ('the user', 'without telling', 'without informing', 'user knowing'), "indirect_injection",
          r"\b(?:do not|don't|never) (?:tell|inform|mention (?:this )?to|reveal (?:this )?to|show) the user\b|\bwithout (?:telling|informing|the user knowing)\b",
          _CONTEXT, 0.95),
)  # fmt: skip

_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]{2}(?:[ ]?[0-9a-fA-F]{2}){15,}(?![0-9a-fA-F])")
_MIN_PAYLOAD_CHARS = 24  # the shortest _BASE64 match (a _HEX one is at least 32)


def _decoded_payloads(text: str) -> list[tuple[int, int, str]]:
    """Printable text hidden in base64 or hex runs, with the run's span."""
    if len(text) < _MIN_PAYLOAD_CHARS:
        return []
    out: list[tuple[int, int, str]] = []
    for match in _BASE64.finditer(text):
        raw = match.group()
        try:
            data = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        out.append((match.start(), match.end(), data.decode("utf-8", "ignore")))
    for match in _HEX.finditer(text):
        try:
            data = bytes.fromhex(match.group().replace(" ", ""))
        except ValueError:
            continue
        out.append((match.start(), match.end(), data.decode("utf-8", "ignore")))
    return [(s, e, t) for s, e, t in out if t and sum(c.isprintable() for c in t) > 0.9 * len(t)]


def _run_rules(text: str, direction: Direction, rules: Prefilter[Rule]) -> list[Finding]:
    found: list[Finding] = []
    lowered = " ".join(text.lower().split())  # needles match across line breaks too
    for rule in rules.candidates(lowered):
        if direction not in rule.directions:
            continue
        for match in rule.pattern.finditer(text):
            found.append(Finding(rule.category, rule.id, match.start(), match.end(), rule.score))
    return found


class InjectionRules:
    """Direct injection and jailbreak phrasings, also inside base64/hex payloads."""

    name = "injection_rules"
    rules: tuple[Rule, ...] = tuple(r for r in RULES if r.category != "indirect_injection")
    prefilter: Prefilter[Rule] = Prefilter((rule, rule.needles) for rule in rules)

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        found = _run_rules(text, context.direction, self.prefilter)
        for start, end, decoded in _decoded_payloads(text):
            for finding in _run_rules(decoded, context.direction, self.prefilter):
                found.append(
                    Finding(
                        finding.category,
                        finding.rule + ".encoded",
                        start,
                        end,
                        finding.score,
                        "inside an encoded payload",
                    )
                )
        return found


class IndirectInjectionRules:
    """Instructions addressed to the model, planted in retrieved documents or tool output."""

    name = "indirect_rules"
    rules: tuple[Rule, ...] = RULES
    prefilter: Prefilter[Rule] = Prefilter((rule, rule.needles) for rule in rules)

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        found = _run_rules(text, "context", self.prefilter)
        return [
            Finding("indirect_injection", f.rule, f.start, f.end, f.score, f.detail) for f in found
        ]
