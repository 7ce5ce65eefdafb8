'
vp8
vp8vp8vp8vp8vp8"vp8"vp8