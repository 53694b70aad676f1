package dev.vfiovm.api;

/**
 * Where one device of a VM stands. The node agent reports {@link #Plugging}, {@link #Attached},
 * {@link #Unplugging} and {@link #Failed}; the operator adds {@link #Waiting} for a device in spec.devices that
 * it has not handed to the node yet (VM not Running, budget, conflict: the reason and message say which).
 */
public enum DeviceState {
  /** In spec.devices, not yet handed to the node: see reason and message for what it waits for. */
  Waiting,
  /** Handed to the VMM (QMP device_add) and waiting for the guest to enable it. */
  Plugging,
  /** Bound to the VM's iommufd, attached, and (hot-plugged) enabled by the guest. */
  Attached,
  /** Removed from spec.devices: QMP device_del sent, waiting for the guest to release it (DEVICE_DELETED). */
  Unplugging,
  /** Could not be plugged or unplugged; see reason and message. */
  Failed
}
