#!/usr/bin/env python3
"""Validate OSCAL JSON documents with a third-party implementation: compliance-trestle's models.

    python3 tests/tools/oscal_validate.py FILE...

Each file's model is chosen by its top-level key (`catalog`, `assessment-results`, `profile`, ...)
and the whole document is parsed with trestle's pydantic model for it (`trestle.oscal.<module>.Model`,
the wrapper holding that key). Trestle's models forbid fields they do not define and check ids
(NCName tokens), uuids (v4/v5), timestamps (with a time zone), required fields and non-empty lists.
For each file prints `ok FILE (model, oscal-version V)` or the errors with their JSON paths; exits
0 only when every file is valid, 1 when one is not, 2 on a usage error or when trestle is missing.

`cargo xtask test` installs compliance-trestle with pip when missing and passes this command to
the tests as `CUSTOS_OSCAL_VALIDATOR`.
"""

import importlib
import json
import re
import sys

# Top-level key -> module of trestle.oscal whose `Model` wraps that key.
MODELS = {
    'catalog': 'catalog',
    'profile': 'profile',
    'component-definition': 'component',
    'system-security-plan': 'ssp',
    'assessment-plan': 'assessment_plan',
    'assessment-results': 'assessment_results',
    'plan-of-action-and-milestones': 'poam',
    'mapping-collection': 'mapping',
}

MISSING_TRESTLE = (
    'compliance-trestle is not installed for {python}: run the tests with `cargo xtask test` '
    '(it installs it with pip), or `python3 -m pip install compliance-trestle`'
)


def json_path(document, loc, error_type):
    """The JSON path of a pydantic error location, and the union-variant labels it went through.

    Pydantic puts the name of the union member it tried (`Group1`, `constrained-str`, ...) into the
    location; walking the document tells those labels from real keys.
    """
    path, labels, node = '$', [], document
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(seg, int) and isinstance(node, list) and 0 <= seg < len(node):
            path += f'[{seg}]'
            node = node[seg]
        elif isinstance(seg, str) and isinstance(node, dict) and (seg in node or (last and error_type == 'missing')):
            path += f'.{seg}' if re.fullmatch(r'[A-Za-z_$][\w$-]*', seg) else f'[{json.dumps(seg)}]'
            node = node.get(seg)
        else:
            labels.append((path, str(seg)))
    return path, labels


def best_union_errors(document, errors):
    """Of the errors under a union, keep those of the member(s) that matched furthest.

    A control with one bad field in a group is reported by pydantic for both group variants; the
    variant that does not even allow `controls` is noise.
    """
    located = []
    for e in errors:
        path, labels = json_path(document, e['loc'], e['type'])
        located.append((e, path, labels))
    depth = {}
    for _, path, labels in located:
        for at, label in labels:
            key = (at, label)
            depth[key] = max(depth.get(key, 0), path.count('.') + path.count('['))
    best = {}
    for (at, _), d in depth.items():
        best[at] = max(best.get(at, 0), d)
    kept = [(e, path) for e, path, labels in located if all(depth[(at, lb)] == best[at] for at, lb in labels)]
    return kept or [(e, path) for e, path, _ in located]


# Trestle's patterns, by what they mean (from trestle/oscal/common.py).
NCNAME_START = (
    '_A-Za-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D'
    '\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD'
)
PATTERNS = {
    '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[45][0-9A-Fa-f]{3}-[89ABab][0-9A-Fa-f]{3}-[0-9A-Fa-f]{12}$':
        'is not a valid uuid: OSCAL wants an RFC 4122 version 4 or 5 UUID',
    f'^[{NCNAME_START}][{NCNAME_START}\\-\\.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040]*$':
        'is not a valid token/id: OSCAL wants an XML NCName (a letter or _ first, then letters, digits, '
        '"-", "_" or "."; no spaces, no colons)',
    '^\\S(.*\\S)?$': 'must be a non-empty string without leading or trailing whitespace',
    '^[^\\n]+$': 'must be one non-empty line',
}


def describe(error):
    kind, ctx = error['type'], error.get('ctx') or {}
    if kind == 'extra_forbidden':
        return f'unknown field "{error["loc"][-1]}" (not in the OSCAL model)'
    if kind == 'missing':
        return 'required field is missing'
    if kind == 'string_pattern_mismatch':
        pattern = ctx.get('pattern', '?')
        return PATTERNS.get(pattern, f'does not match the pattern {pattern}')
    if kind == 'timezone_aware':
        return 'timestamp must have a time zone'
    if kind == 'too_short':
        return 'must not be empty (an empty array must be left out)'
    return f'{error["msg"]} [{kind}]'


def validate(path):
    """Returns (ok, lines)."""
    try:
        with open(path, encoding='utf-8') as f:
            document = json.load(f)
    except (OSError, ValueError) as e:
        return False, [f'  cannot read JSON: {e}']
    if not isinstance(document, dict):
        return False, ['  $: the document must be a JSON object']
    keys = [k for k in document if k in MODELS]
    if len(keys) != 1:
        return False, [
            f'  $: expected exactly one OSCAL top-level key ({", ".join(MODELS)}); found {list(document)}'
        ]
    root = keys[0]
    from pydantic import ValidationError
    from trestle.common.err import TrestleError

    model = importlib.import_module(f'trestle.oscal.{MODELS[root]}').Model
    try:
        model.model_validate(document)
    except (ValidationError, TrestleError) as e:
        if isinstance(e, TrestleError):
            # Trestle replaces the error list by one message when an error touches oscal-version;
            # the same validator, called directly, gives the whole list with locations.
            try:
                model.__pydantic_validator__.validate_python(document)
                return False, [f'  {e}']
            except ValidationError as full:
                e = full
        lines = []
        for error, at in best_union_errors(document, e.errors()):
            value = repr(error.get('input'))
            value = value if len(value) <= 80 else value[:77] + '...'
            line = f'  {at}: {describe(error)}'
            if error['type'] != 'missing':
                line += f' (got {value})'
            if line not in lines:
                lines.append(line)
        return False, lines
    version = (document[root].get('metadata') or {}).get('oscal-version', '?')
    return True, [f'{root}, oscal-version {version}']


def trestle_version():
    try:
        from importlib.metadata import version

        return version('compliance-trestle')
    except Exception:  # noqa: BLE001 - only for the message
        return '?'


def main(argv):
    if len(argv) < 2 or argv[1] in ('-h', '--help'):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        importlib.import_module('trestle.oscal.catalog')
    except ImportError as e:
        print(MISSING_TRESTLE.format(python=sys.executable) + f' ({e})', file=sys.stderr)
        return 2
    all_ok = True
    for path in argv[1:]:
        ok, lines = validate(path)
        if ok:
            print(f'ok {path} ({lines[0]})')
        else:
            all_ok = False
            print(f'INVALID {path} (compliance-trestle {trestle_version()}):')
            print('\n'.join(lines))
    return 0 if all_ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
