"""Offline sound sources for the demo tasks (pip wheels only, no downloads).

  instruments  General MIDI notes and drum hits (tinysoundfont + TimGM6mb.sf2)
  speech       words spoken by espeak-ng (espeakng-loader + ctypes)
  noise        coloured noise, hum, backgrounds, noise bursts (numpy)
  mixing       levels, placement, audible extent of a sound

  from tasks.demo.sources import instruments, speech
  note = instruments.render_note(0, 69)          # piano A4, 1 s, 16 kHz
  word = speech.speak("stop", "en-us+f3")
"""
