"""PowerShell analysis without PowerShell: a tokenizer and a static deobfuscator.

>>> from threatscope.powershell import deobfuscate
>>> deobfuscate("iex ('Write-'+'Host hi')").final
'Write-Host hi'
"""

from .deobfuscate import MAX_BYTES, Layer, Result, deobfuscate, extract_iocs
from .tokenize import Token, tokenize

__all__ = ["MAX_BYTES", "Layer", "Result", "Token", "deobfuscate", "extract_iocs", "tokenize"]
