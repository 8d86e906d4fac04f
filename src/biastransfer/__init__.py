"""biastransfer: does the bias of a pretrained vision model carry over into the finetuned model?

Implements the protocols of "Overwriting Pretrained Bias with Finetuning Data" (Wang & Russakovsky, ICCV 2023)
and the trigger experiments of "When does Bias Transfer in Transfer Learning?" (Salman et al.).
"""

__version__ = "0.2.0"
