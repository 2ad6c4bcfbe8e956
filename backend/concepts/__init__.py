"""Personal concepts: LoRA adapters an artist trains from a few images or imports.

* :mod:`.library` - the on-disk concept store (``IMPASTO_HOME/concepts/NAME/``),
  written atomically;
* :mod:`.lora_io` - LoRA files of the ecosystem (kohya / A1111 / ComfyUI keys,
  diffusers and peft keys) to and from the library's own format;
* :mod:`.adapters` - putting concepts into a resident model with peft, switching
  them per job, taking them out again;
* :mod:`.train` - the training job (DreamBooth-style LoRA / Custom Diffusion),
  registered as the engine's ``train`` job kind;
* :mod:`.class_images`, :mod:`.checkpoint`, :mod:`.dataset` - its parts:
  prior-preservation images, resumable checkpoints, the prepared pictures.
"""
