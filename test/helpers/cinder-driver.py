#!/usr/bin/env python3
"""OpenStack Cinder's SPDK volume driver, run for real against an spdk-node target.

Used by test/cinder.test.ts. It loads a real cinder.conf (oslo.config, the file given as the
first argument, backend section given as the second), instantiates
cinder.volume.drivers.spdk.SPDKDriver the way cinder-volume's manager does (which also builds
the spdk-nvmeof target helper, cinder.volume.targets.spdknvmf.SpdkNvmf), and then serves
commands, one JSON object per line on stdin, each answered by one JSON line on stdout:

    {"op": "create_volume", "volume": {"id": "<uuid>", "size": 1}}
    -> {"ok": true, "result": <what the driver method returned>}
    -> {"ok": false, "error": "KeyError", "message": "'result'"}

Volumes and snapshots are Cinder's own versioned objects (cinder.objects.Volume and
cinder.objects.Snapshot), built without a database, with the fields the driver reads (id,
name via volume_name_template, size, provider_location, ...; snapshot: id, name, volume_id,
volume_size, volume). Nothing of the driver is patched or mocked: every RPC it sends goes over
HTTP, through python-requests, to the target.

The first line written is {"ready": true, ...} once the driver is set up (__init__ and
do_setup; the target helper's __init__ has already asked for an RDMA transport then).
"""

import json
import sys
import traceback


def main():
    conf_file, backend = sys.argv[1], sys.argv[2]

    from oslo_config import cfg
    from cinder import context
    from cinder import objects
    from cinder.volume import configuration
    from cinder.volume import driver as volume_driver
    from oslo_utils import importutils

    CONF = cfg.CONF
    CONF([], project='cinder', default_config_files=[conf_file])
    objects.register_all()

    # What cinder.volume.manager.VolumeManager.__init__ does for a backend section.
    from cinder.volume import manager
    config = configuration.Configuration(manager.volume_backend_opts, config_group=backend)
    config.append_config_values(volume_driver.volume_opts)
    drv = importutils.import_object(config.volume_driver, configuration=config, db=None,
                                    host='cinder-test@%s' % backend, cluster_name=None,
                                    is_vol_db_empty=False, active_backend_id=None)
    ctx = context.get_admin_context()

    volumes = {}
    snapshots = {}

    def volume(spec):
        v = volumes.get(spec['id'])
        if v is None:
            v = objects.Volume(ctx, id=spec['id'], _name_id=None, size=spec['size'],
                               display_name='test-%s' % spec['id'][:8], provider_location=None,
                               provider_auth=None, provider_id=None, status='creating')
            volumes[spec['id']] = v
        if 'size' in spec:
            v.size = spec['size']
        return v

    def snapshot(spec):
        s = snapshots.get(spec['id'])
        if s is None:
            vol = volumes[spec['volume_id']]
            s = objects.Snapshot(ctx, id=spec['id'], volume_id=vol.id, volume_size=vol.size,
                                 volume=vol, display_name='snap-%s' % spec['id'][:8],
                                 status='creating', provider_location=None)
            snapshots[spec['id']] = s
        return s

    def run(cmd):
        op = cmd['op']
        if op == 'do_setup':
            return drv.do_setup(ctx)
        if op == 'check_for_setup_error':
            return drv.check_for_setup_error()
        if op == 'get_volume_stats':
            return drv.get_volume_stats(refresh=True)
        if op == 'create_volume':
            return drv.create_volume(volume(cmd['volume']))
        if op == 'delete_volume':
            v = volume(cmd['volume'])
            r = drv.delete_volume(v)
            volumes.pop(v.id, None)
            return r
        if op == 'extend_volume':
            v = volume(cmd['volume'])
            r = drv.extend_volume(v, cmd['new_size'])
            v.size = cmd['new_size']  # as the manager does after the driver returns
            return r
        if op == 'create_snapshot':
            return drv.create_snapshot(snapshot(cmd['snapshot']))
        if op == 'delete_snapshot':
            s = snapshot(cmd['snapshot'])
            r = drv.delete_snapshot(s)
            snapshots.pop(s.id, None)
            return r
        if op == 'create_volume_from_snapshot':
            return drv.create_volume_from_snapshot(volume(cmd['volume']), snapshot(cmd['snapshot']))
        if op == 'create_cloned_volume':
            return drv.create_cloned_volume(volume(cmd['volume']), volume(cmd['src_volume']))
        if op == 'create_export':
            v = volume(cmd['volume'])
            update = drv.create_export(ctx, v, cmd.get('connector'))
            # The manager stores the model update on the volume before initialize_connection.
            if update:
                v.update(update)
            return update
        if op == 'ensure_export':
            return drv.ensure_export(ctx, volume(cmd['volume']))
        if op == 'remove_export':
            return drv.remove_export(ctx, volume(cmd['volume']))
        if op == 'validate_connector':
            return drv.validate_connector(cmd['connector'])
        if op == 'initialize_connection':
            return drv.initialize_connection(volume(cmd['volume']), cmd['connector'])
        if op == 'terminate_connection':
            return drv.terminate_connection(volume(cmd['volume']), cmd['connector'])
        raise ValueError('unknown op %r' % op)

    drv.do_setup(ctx)
    out = {'ready': True, 'driver': type(drv).__module__ + '.' + type(drv).__name__,
           'target_helper': type(drv.target_driver).__module__ + '.' + type(drv.target_driver).__name__,
           'transport': drv.target_driver.nvme_transport_type,
           'url': drv.url}
    print(json.dumps(out), flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            reply = {'ok': True, 'result': run(cmd)}
        except Exception as e:  # report, keep serving: the test decides what a failure means
            reply = {'ok': False, 'error': type(e).__name__, 'message': str(e),
                     'trace': traceback.format_exc()}
        print(json.dumps(reply, default=str), flush=True)


if __name__ == '__main__':
    main()
