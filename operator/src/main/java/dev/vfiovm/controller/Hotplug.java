package dev.vfiovm.controller;

import dev.vfiovm.api.DeviceResources;
import dev.vfiovm.api.Quantities;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The re-planner of a placed VM's devices (hot-plug, issue 14), pure: from what the VM holds (its ledger entry,
 * the boot devices of its placed spec, the hot-plugged ones of its claim), the new {@code spec.devices}, whether
 * the VM runs, what the agent reports present and which attachment pods exist, and its node's budget and the
 * other VMs' load there: which devices to plug (attachment pods to create), to unplug (attachment pods to delete,
 * detach pods for boot-time devices), to release, the new memlock limit, and why the others wait.
 *
 * <p>Nothing half-done: a plug is admitted only whole - its device free on the node, its resource advertised,
 * the limit it raises within the node's free budget - and one that waits creates nothing and changes no limit.
 * Plugs are admitted one by one in spec order, each on top of the ones admitted before it. The limit is
 * {@link MemlockPolicy}'s (factor = devices with vIOMMU, else 1) over the devices the VM may have mapped: those
 * it keeps or plugs and those still on their way out; it is never lowered below the limit the agent reports in
 * force. A hot-plugged device is released (budget, device, limit) only once the agent reports it gone and its
 * attachment pod is gone; a boot-time device stays held until the node pod ends (the kubelet keeps it
 * allocated to the node pod), so its device stays in the entry.
 */
final class Hotplug {
  private Hotplug() {}

  /** Why a device waits (the names are {@link Reason} values). */
  enum Wait {
    VmNotRunning, InsufficientBudget, DeviceConflict, MissingDeviceResource, HotplugNeedsIommufd
  }

  /**
   * What the re-planner sees.
   *
   * @param held the VM's ledger entry (devices and limit counted now)
   * @param bootLimitBytes the limit the VM was placed with (its boot devices'), the base of every new limit
   * @param boot the boot devices (the placed spec's)
   * @param hotplugged the devices hot-plugged and not yet released (the claim's)
   * @param desired the live spec.devices
   * @param running whether the agent reports the VM Running (its node pod not being deleted)
   * @param iommufd whether the VM runs with /dev/iommu (backend Iommufd, or Auto with a boot device): only then
   *     can the agent plug
   * @param present the devices the agent reports (any state): a device not among them is gone from the VM
   * @param attachmentPods the devices that have an attachment pod (any phase)
   * @param limitInForceBytes the limit the agent reports in force, or null
   * @param node the node's budget
   * @param others the other VMs' load on the node (limits and devices held)
   */
  record Input(Ledger.Entry held, long bootLimitBytes, long memoryBytes, boolean viommu, List<String> boot,
      List<String> hotplugged, List<String> desired, boolean running, boolean iommufd, Set<String> present,
      Set<String> attachmentPods, Long limitInForceBytes, NodeBudget node, Placement.Load others) {
    Input {
      boot = List.copyOf(boot);
      hotplugged = List.copyOf(hotplugged);
      desired = List.copyOf(desired);
      present = Set.copyOf(present);
      attachmentPods = Set.copyOf(attachmentPods);
      others = others == null ? Placement.Load.EMPTY : others;
    }
  }

  /** A device admitted for plugging: its attachment pod raises the limit to {@code memlock}, its unplug lowers it to {@code unplugMemlock}. */
  record Plug(String device, long memlockBytes, long unplugMemlockBytes) {}

  /** A device that waits, with why and what to do. */
  record Waiting(String device, Wait reason, String message) {}

  /**
   * The plan.
   *
   * @param entry the new ledger entry (devices and limit to count)
   * @param hotplugged the new hot-plugged devices (the claim's)
   * @param plug attachment pods to create (newly admitted, or admitted earlier and without their pod)
   * @param unplug hot-plugged devices whose attachment pod is to be deleted
   * @param detach boot-time devices removed from the spec and still present: a detach pod each
   * @param released hot-plugged devices released by this plan (gone from the VM, attachment pod gone)
   * @param waiting devices of the spec that wait
   */
  record Plan(Ledger.Entry entry, List<String> hotplugged, List<Plug> plug, List<String> unplug, List<Plug> detach,
      List<String> released, List<Waiting> waiting) {
    /** Whether the entry or the hot-plugged devices change (ledger and claim to update). */
    boolean changes(Input in) {
      return !entry.equals(in.held()) || !hotplugged.equals(in.hotplugged());
    }
  }

  static long limit(Input in, int devices) {
    int bootFactor = MemlockPolicy.factor(in.viommu(), in.boot().size());
    int factor = MemlockPolicy.factor(in.viommu(), devices);
    return Math.addExact(in.bootLimitBytes(), Math.multiplyExact((long) factor - bootFactor, in.memoryBytes()));
  }

  static Plan plan(Input in) {
    Set<String> desired = new LinkedHashSet<>(in.desired());
    Set<String> boot = new LinkedHashSet<>(in.boot());
    List<String> hotplugged = new ArrayList<>(in.hotplugged());
    // released: hot-plugged, out of the spec, gone from the VM and its attachment pod gone
    List<String> released = new ArrayList<>();
    for (String d : in.hotplugged()) {
      if (!desired.contains(d) && !in.present().contains(d) && !in.attachmentPods().contains(d)) {
        released.add(d);
        hotplugged.remove(d);
      }
    }
    List<String> unplug = in.hotplugged().stream()
        .filter(d -> !desired.contains(d) && in.attachmentPods().contains(d)).toList();
    // the devices the VM may have mapped: boot ones kept or still present, hot-plugged ones not released
    Set<String> mapped = new LinkedHashSet<>();
    boot.stream().filter(d -> desired.contains(d) || in.present().contains(d)).forEach(mapped::add);
    mapped.addAll(hotplugged);

    Map<String, String> held = in.others().devices();
    long budget = in.node() == null ? 0 : in.node().budgetBytes();
    long othersUsed = in.others().usedBytes();
    long limit = Math.max(limit(in, mapped.size()), in.limitInForceBytes() == null ? 0 : in.limitInForceBytes());
    long counted = limit;
    List<Plug> plug = new ArrayList<>();
    List<Waiting> waiting = new ArrayList<>();
    for (String d : desired) {
      if (boot.contains(d) || hotplugged.contains(d)) {
        continue;
      }
      String resource = DeviceResources.pci(d);
      Waiting w = null;
      if (!in.iommufd()) {
        w = new Waiting(d, Wait.HotplugNeedsIommufd, "device " + d + " cannot be plugged: the VM runs without /dev/iommu"
            + " (dmaBackend IoUring, or Auto with no device at boot); hot-plug needs dmaBackend Iommufd, or Auto with a"
            + " device at boot: delete and re-create the VfioVm so");
      } else if (!in.running()) {
        w = new Waiting(d, Wait.VmNotRunning, "device " + d + " is plugged once the VM is Running");
      } else if (in.node() == null || in.node().allocatable(resource) < 1) {
        w = new Waiting(d, Wait.MissingDeviceResource, "node " + in.held().node() + " has no " + resource
            + " in status.allocatable: bind the device to vfio-pci there (its vfiovm-node daemon then advertises it),"
            + " or remove it from spec.devices");
      } else if (held.containsKey(d)) {
        w = new Waiting(d, Wait.DeviceConflict, "device " + d + " on node " + in.held().node()
            + " is assigned to VfioVm " + held.get(d) + "; it is plugged once that VM releases it, or remove it from"
            + " spec.devices");
      } else {
        long next = Math.max(counted, limit(in, mapped.size() + 1));
        long free = budget - othersUsed - counted;
        long needs = next - counted;
        if (needs > free) {
          w = new Waiting(d, Wait.InsufficientBudget, "device " + d + " raises the memlock limit from "
              + Quantities.human(counted) + " to " + Quantities.human(next) + ": node " + in.held().node() + " has free "
              + Quantities.human(Math.max(0, free)) + " of budget " + Quantities.human(budget) + ", needs +"
              + Quantities.human(needs) + "; it is plugged once the budget frees, or remove it from spec.devices");
        } else {
          mapped.add(d);
          hotplugged.add(d);
          plug.add(new Plug(d, next, counted));
          counted = next;
        }
      }
      if (w != null) {
        waiting.add(w);
      }
    }
    // admitted earlier (the claim holds them) but without their attachment pod: made again (e.g. the operator
    // restarted between the claim and the pod)
    for (String d : hotplugged) {
      if (desired.contains(d) && !in.attachmentPods().contains(d) && plug.stream().noneMatch(p -> p.device().equals(d))
          && !in.present().contains(d)) {
        plug.add(0, new Plug(d, counted, limit(in, mapped.size() - 1)));
      }
    }
    List<Plug> detach = new ArrayList<>();
    for (String d : boot) {
      if (!desired.contains(d) && in.present().contains(d)) {
        detach.add(new Plug(d, counted, limit(in, mapped.size() - 1)));
      }
    }
    List<String> devices = new ArrayList<>(boot);
    hotplugged.stream().filter(d -> !devices.contains(d)).forEach(devices::add);
    Ledger.Entry entry = new Ledger.Entry(in.held().hostUid(), in.held().node(), counted, devices);
    return new Plan(entry, List.copyOf(hotplugged), plug, unplug, detach, released, waiting);
  }

  /** The devices each waiting reason holds back, for a message (reason -> devices). */
  static Map<Wait, List<String>> byReason(List<Waiting> waiting) {
    Map<Wait, List<String>> out = new LinkedHashMap<>();
    waiting.forEach(w -> out.computeIfAbsent(w.reason(), r -> new ArrayList<>()).add(w.device()));
    return out;
  }
}
