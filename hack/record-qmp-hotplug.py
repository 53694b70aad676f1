#!/usr/bin/env python3
"""Records a real QEMU's QMP exchange of the agent's hot-plug sequence, for QmpTest's replay.

Starts QEMU (q35, TCG, firmware only: nothing to boot, the machine halts in SeaBIOS) with one pcie-root-port
`hotplug0` as the agent reserves them, and on its QMP socket does what the agent does: qmp_capabilities,
getfd (a real fd by SCM_RIGHTS in the same sendmsg as the command), device_add (an emulated e1000e here, a
device QEMU can add on any host; the agent adds vfio-pci the same way), query-pci, device_del, and the wait for
DEVICE_DELETED; then a vfio-pci device_add naming an iommufd object that does not exist (QEMU's real error).
Every line QEMU sent ("<") and the client sent (">", with "#fd" when an fd went along) is written in order.

Usage: record-qmp-hotplug.py QEMU OUT [-L DIR]...
  e.g. hack/record-qmp-hotplug.py /opt/vfiovm/qemu10/usr/bin/qemu-system-x86_64 \
       operator/src/test/resources/qmp/hotplug-qemu10.txt -L /opt/vfiovm/qemu10/usr/share/qemu -L /usr/share/seabios
"""
import json, os, socket, subprocess, sys, tempfile, time

qemu, out, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
d = tempfile.mkdtemp()
path = os.path.join(d, "qmp.sock")
argv = [qemu, *extra, "-machine", "q35", "-accel", "tcg", "-m", "64M", "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot", "-qmp", f"unix:{path},server=on,wait=on",
        "-device", "pcie-root-port,id=hotplug0,bus=pcie.0,chassis=1", "-device", "qemu-xhci,id=xhci"]
p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
for _ in range(200):
    if os.path.exists(path):
        break
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
f = s.makefile("rb")
log = []

def recv():
    line = f.readline().decode().rstrip("\n")
    print(line[:200], file=sys.stderr)
    log.append("< " + line)
    return json.loads(line)

def send(cmd, fd=None):
    data = (json.dumps(cmd, separators=(",", ":")) + "\n").encode()
    if fd is None:
        s.sendall(data)
        log.append("> " + data.decode().rstrip("\n"))
    else:
        socket.send_fds(s, [data], [fd])
        log.append("> " + data.decode().rstrip("\n") + " #fd")
    while True:
        m = recv()
        if "return" in m or "error" in m:
            return m

recv()  # greeting
send({"execute": "qmp_capabilities"})
# SeaBIOS numbers the buses and maps the BARs of what is there at boot (xhci: the enabled case of query-pci)
time.sleep(3)
fd = os.open("/dev/null", os.O_RDWR)
send({"execute": "getfd", "arguments": {"fdname": "hotfd0"}}, fd)
os.close(fd)
send({"execute": "device_add", "arguments": {"driver": "e1000e", "id": "hotdev0", "bus": "hotplug0"}})
send({"execute": "query-pci"})
send({"execute": "device_del", "arguments": {"id": "hotdev0"}})
import select

def wait_deleted(dev, seconds):
    deadline = time.time() + seconds
    got = any('"DEVICE_DELETED"' in l and '"%s"' % dev in l for l in log)
    while not got and time.time() < deadline:
        if select.select([s], [], [], 0.2)[0]:
            m = recv()
            got = m.get("event") == "DEVICE_DELETED" and m.get("data", {}).get("device") == dev
    return got

# a PCIe slot's unplug needs the guest's cooperation (attention button, then the OS powers the slot off):
# with firmware only, no DEVICE_DELETED comes for hotdev0 (the agent's bounded wait times out the same way)
got0 = wait_deleted("hotdev0", 3)
# a device whose unplug needs no guest (USB on xHCI): QEMU's DEVICE_DELETED event as it really looks
send({"execute": "device_add", "arguments": {"driver": "usb-tablet", "id": "hotdev2", "bus": "xhci.0"}})
send({"execute": "device_del", "arguments": {"id": "hotdev2"}})
got = wait_deleted("hotdev2", 10)
send({"execute": "device_add", "arguments": {"driver": "vfio-pci", "id": "hotdev1", "bus": "hotplug0",
                                              "iommufd": "iommufd0", "fd": "hotfd0"}})
send({"execute": "closefd", "arguments": {"fdname": "hotfd0"}})
send({"execute": "quit"})
p.wait(30)
with open(out, "w") as o:
    o.write("# QMP transcript recorded from real %s by hack/record-qmp-hotplug.py\n" %
            subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0])
    o.write("# > client (the agent's side; '#fd': an fd went along by SCM_RIGHTS), < QEMU\n")
    o.write("\n".join(log) + "\n")
print("recorded %d lines into %s; DEVICE_DELETED hotdev0 %s, hotdev2 %s" % (len(log), out, got0, got))
