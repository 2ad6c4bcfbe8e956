import time, statistics, torch
from diffusers import UNet2DConditionModel, AutoencoderKL
from impasto.backend.starter import architecture as A
torch.set_num_threads(1)
def t(f, n=7):
    f(); f()
    xs=[]
    for _ in range(n):
        s=time.perf_counter(); f(); xs.append(time.perf_counter()-s)
    return statistics.median(xs)*1000
cross = A.TEXT_CONFIG_SCENES["hidden_size"]
for px in (128, 512):
    res = {}
    for name, fac in (("l3w", 8), ("l4w", 4)):
        u = UNet2DConditionModel(**A.unet_config(name, px//fac, cross)).eval()
        v = AutoencoderKL(**A.VAE_CONFIGS[fac]).eval()
        x = torch.randn(2, 4, px//fac, px//fac); e = torch.randn(2, 40, cross)
        with torch.no_grad():
            ut = t(lambda: u(x, 500, encoder_hidden_states=e))
            dt = t(lambda: v.decode(x[:1]), 5)
        res[name] = (ut, dt)
        print(px, name, f"unet(batch2) {ut:.1f} ms  vae.decode {dt:.1f} ms", flush=True)
    print(px, "ratio l4w/l3w unet %.2f decode %.2f" % (res['l4w'][0]/res['l3w'][0], res['l4w'][1]/res['l3w'][1]))
