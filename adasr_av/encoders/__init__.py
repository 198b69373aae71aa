"""Encoders: turn audio (ASR) or frames (OCR, captions) into timestamped text chunks.

CTranslate2 picks its matrix library and vector width from the CPU it finds (Intel MKL on Intel,
oneDNN elsewhere; AVX-512 where present), and Whisper's words can change with them: with int8, the
demo stories were heard right with AVX-512 and wrong with AVX2 (a sentence written twice, three
merged). The CPU default is float32 (`whisper_models.compute_type_for`), and the kernels are pinned
here to oneDNN at AVX2, which every x86 CPU this runs on has, before any encoder imports
CTranslate2 (it reads these once): a test or a measurement hears the same words on any machine.
Set the variables yourself to choose otherwise (CT2_USE_MKL=1 for MKL on Intel, for example).
"""

import os

for _name, _value in {
    "CT2_USE_MKL": "0",
    "CT2_FORCE_CPU_ISA": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}.items():
    os.environ.setdefault(_name, _value)
