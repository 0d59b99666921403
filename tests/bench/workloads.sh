# shellcheck shell=bash
# irp benchmark workloads, sourced by run.sh (see tests/bench/README.md).
#
# Each workload_NAME makes its inputs under $WORK, declares the programs it
# times with `side`, races them with `race` and adds its table rows with
# `row` (or `row_ideal`, `skip_row`, `mem_row`, `note`).  run.sh provides
# those, `compare`, `playbook`, `human`, `input_made`, and the variables
# IRP, PULL, WORK, RUNS (the --runs directory), SPENT (where earlier run
# directories go, on the same filesystem), RUNS_FS (its filesystem),
# HERE, runs, steps, spawn_steps and quick.
#
# Functions here run through "workload_$name" (SC2317 cannot see that),
# and use or set variables of run.sh (SC2154, SC2034).
# shellcheck disable=SC2317,SC2154,SC2034

WORKLOADS=(validate simulate spawn_independent spawn_chain spawn_large_parent
	ansible fd_limit memory)

# The runs of the slow workloads (a run lasts seconds to minutes): at most
# 3, and 1 with --quick, which only proves that they work.
few_runs() {
	if ((quick)); then echo 1; else echo $((runs < 3 ? runs : 3)); fi
}

# The filesystem the run directories are on, for the labels of rows whose
# irp writes a journal there (fsync makes it matter).
on_fs() { echo "[runs on $RUNS_FS]"; }

# RACE_PREP for races that write run directories or ninja logs: every run
# starts from the same empty state, and the clearing is not timed.  Earlier
# run directories are moved to $SPENT (run.sh deletes it at the end), not
# deleted: freeing thousands of inodes just before a run slows that run's
# file creation on some filesystems (ext4 without a journal scans past
# recently freed inodes for minutes), a cost of the clearing, not of irp.
PREP_DIR=''
prep_side() {
	case $1 in
	irp*)
		local to
		to=$(mktemp -d "$SPENT/XXXXXX")
		find "$RUNS" -mindepth 1 -maxdepth 1 -exec mv -t "$to" -- {} +
		;;
	ninja) rm -f -- "$PREP_DIR/.ninja_log" "$PREP_DIR/.ninja_deps" ;;
	esac
}

# gen_spawn DIR ARGS...: the inputs of a spawn workload (gen_spawn.py).
gen_spawn() {
	local d=$1
	shift
	python3 "$HERE/gen_spawn.py" "$d" "$@"
}

# Load and check a large playbook: `irp validate` against pulling the same
# file's YAML events with libyaml and nothing else.
workload_validate() {
	local f
	f=$(playbook "$steps" mixed)
	compare "validate $(human "$steps") steps vs libyaml pull" -- "$IRP" validate "$f" -- "$PULL" "$f"
}

# A tabletop run of the same playbook as fast as it goes, against
# validating it: what planning, the virtual clock, the journal and the
# report cost on top of loading.  --quick simulates 1,000 steps.
workload_simulate() {
	local n=$steps f
	if ! "$IRP" simulate --help >/dev/null 2>&1; then
		skip_row "simulate --speed max --auto vs validate" "\`irp simulate --help\` failed (not built yet?)"
		return 0
	fi
	((quick && n > 1000)) && n=1000
	f=$(playbook "$n" mixed)
	side irp "$IRP" simulate --quiet --speed max --auto --runs "$RUNS" \
		-i incident_id=INC-2026-0001 "$f"
	side validate "$IRP" validate "$f"
	RACE_PREP=prep_side
	race || true
	row "simulate --speed max --auto, $(human "$n") steps vs irp validate $(on_fs)" irp validate
}

# spawn_race WHAT DIR JOBS: irp (with and without fsync), ninja and make
# running DIR's commands, JOBS at a time; rows against ninja and make.
spawn_race() {
	local what=$1 d=$2 j=$3 peers=0
	side irp "$IRP" run --quiet --runs "$RUNS" --jobs "$j" "$d/irp.yaml"
	side irp_nofsync "$IRP" run --quiet --no-fsync --runs "$RUNS" --jobs "$j" "$d/irp.yaml"
	if command -v ninja >/dev/null; then
		side ninja ninja -C "$d" -j "$j" --quiet
		peers=1
	fi
	if command -v make >/dev/null; then
		side make make -C "$d" -s --no-print-directory -j "$j"
		peers=1
	fi
	if ((!peers)); then
		SIDES=()
		skip_row "$what, --jobs $j" "neither ninja nor make is installed"
		return 0
	fi
	PREP_DIR=$d RACE_PREP=prep_side
	race || true
	if command -v ninja >/dev/null; then
		row "$what, --jobs $j vs ninja -j$j $(on_fs)" irp ninja
		row "$what, --jobs $j --no-fsync vs ninja -j$j $(on_fs)" irp_nofsync ninja
	else
		skip_row "$what, --jobs $j vs ninja -j$j" "ninja is not installed"
	fi
	if command -v make >/dev/null; then
		row "$what, --jobs $j vs make -j$j $(on_fs)" irp make
	else
		skip_row "$what, --jobs $j vs make -j$j" "make is not installed"
	fi
}

# N independent no-op steps, argv (`run: [true]`, exec'd directly) and
# shell (`run: "true"`, through /bin/sh -c), at --jobs 2 and 16.  ninja
# always runs /bin/sh -c; make execs `true` directly and, in the shell
# rows, runs it through dash (gen_spawn.py says how).
workload_spawn_independent() {
	local form j d
	for form in argv shell; do
		d=$WORK/spawn-independent-$form
		gen_spawn "$d" --steps "$spawn_steps" --shape independent --form "$form"
		for j in 2 16; do
			spawn_race "$spawn_steps independent $form steps" "$d" "$j"
		done
	done
}

# N no-op steps, each waiting for the one before: the latency from one
# process's end to the next one's start, which parallelism cannot hide.
workload_spawn_chain() {
	local form d
	for form in argv shell; do
		d=$WORK/spawn-chain-$form
		gen_spawn "$d" --steps "$spawn_steps" --shape chain --form "$form"
		spawn_race "$spawn_steps chained $form steps" "$d" 2
	done
}

# The independent argv steps again, in a playbook of --steps steps: the
# others have `needs: []` and `when: false`, so each is skipped at the
# start (one condition, one journal line) and never spawns or takes a job
# slot.  A `needs` on a failing step would cost a spawn and fail the run
# (exit 1).  The parent is large while it spawns: a cost per spawn that
# grows with the playbook (fork copying page tables, a scan of all steps
# per event) shows up against the small-playbook rows.  The peers' files
# have as many targets, the 98,000 never built (gen_spawn.py).
workload_spawn_large_parent() {
	local d=$WORK/spawn-large-parent skipped=$((steps - spawn_steps))
	gen_spawn "$d" --steps "$spawn_steps" --shape independent --form argv --skipped "$skipped"
	input_made "$d/irp.yaml" "$steps"
	spawn_race "$spawn_steps independent argv steps + $(human "$skipped") when:false (peers: unbuilt)" "$d" 16
}

# Ansible, the tool many teams would otherwise script a response with:
# N tasks on localhost (connection: local), one after the other, each
# running `true`; irp runs the same N steps as a chain.  ansible.cfg in
# the input directory keeps ansible's state there and away from ~/.ansible.
workload_ansible() {
	local n d sizes=(50 200)
	((quick)) && sizes=(5 10)
	if ! command -v ansible-playbook >/dev/null; then
		for n in "${sizes[@]}"; do
			skip_row "$n chained argv steps vs ansible-playbook" \
				"ansible-playbook is not installed (Debian: apt-get install ansible-core)"
		done
		return 0
	fi
	for n in "${sizes[@]}"; do
		d=$WORK/ansible-$n
		gen_spawn "$d" --steps "$n" --shape chain --form argv --ansible
		cat >"$d/ansible.cfg" <<-EOF
			[defaults]
			home = $d/.ansible
			local_tmp = $d/.ansible/tmp
			remote_tmp = $d/.ansible/tmp
			interpreter_python = $(command -v python3)
			retry_files_enabled = false
			nocolor = true
		EOF
		side irp "$IRP" run --quiet --runs "$RUNS" "$d/irp.yaml"
		side ansible env ANSIBLE_CONFIG="$d/ansible.cfg" \
			ansible-playbook -i localhost, "$d/ansible.yaml"
		RACE_PREP=prep_side
		race "$(few_runs)" || true
		row "$n chained argv steps vs ansible-playbook (connection: local) $(on_fs)" irp ansible
	done
}

# N steps of `sleep 1` with --jobs N under a soft limit of 1,024 open
# files: irp must queue the spawns the limit refuses (never fail a step for
# lack of descriptors) and start them as children end.  The peer is the
# ideal time: with S children fitting in the limit at once, ceil(N / S)
# waves of 1 s.  fd_slots.py measures S from a running irp: descriptors
# with one and with two children, so S = (1024 - BASE) / PER_CHILD; the
# journal of the last run tells how many children really ran at once.
workload_fd_limit() {
	local n=10000 limit=1024 d=$WORK/fd-limit probe slots base per what ideal peak
	((quick)) && n=1000
	if ! probe=$(python3 "$HERE/fd_slots.py" "$IRP" "$limit" "$WORK/fd-probe"); then
		printf '%s\t%s\n' "fd_limit" "FAILED: the descriptor probe did not work (see above)" >>"$WORK/rows"
		failed=1
		return 0
	fi
	read -r slots base per what <<<"$probe"
	ideal=$(((n + slots - 1) / slots))
	gen_spawn "$d" --steps "$n" --shape independent --form argv --cmd "sleep 1"
	# shellcheck disable=SC2016  # expanded by that bash, not this one
	side irp bash -c 'ulimit -Sn "$1" && shift && exec "$@"' fd_limit "$limit" \
		"$IRP" run --quiet --runs "$RUNS" --jobs "$n" "$d/irp.yaml"
	# What the machine allows: the same n children, $slots at once, started
	# by a program that does nothing else (execve, no shell, as irp's argv
	# steps).  Starting and reaping 10,000 processes costs CPU that the
	# ideal below does not count.
	# shellcheck disable=SC2016
	side xargs bash -c 'ulimit -Sn "$1" && yes 1 | head -n "$2" | xargs -P "$3" -n 1 sleep' \
		fd_limit "$limit" "$n" "$slots"
	RACE_PREP=prep_side
	race "$(few_runs)" 0 || true
	row_ideal "$n steps of sleep 1, --jobs $n, ulimit -n $limit vs ideal ($slots at once) $(on_fs)" \
		irp "$ideal" "ideal: ceil($n / $slots) x 1 s"
	row "$n steps of sleep 1, --jobs $n, ulimit -n $limit vs xargs -P $slots $(on_fs)" irp xargs
	if [[ -z $RACE_FAILED ]]; then
		peak=$(python3 "$HERE/fd_slots.py" --peak "$RUNS"/*/journal.jsonl) || peak='?'
		note "fd_limit: irp holds $base descriptors with no child and $per per child ($what:" \
			"stdout and stderr pipes, and the log it writes them to), so $slots =" \
			"($limit - $base) / $per children fit; ideal = ceil($n / $slots) x 1 s = $ideal s." \
			"Most children running at once in the last run's journal: $peak."
	fi
}

# Peak resident memory per step of a large playbook, for `irp validate`
# (the --steps mixed playbook) and `irp run` of --steps steps that are all
# skipped by `when: false` (each step loaded, decided and journaled, with
# no process).  Each is shown against the same program on a one-step
# playbook, whose RSS is the part that does not grow with the steps.
workload_memory() {
	local f d=$WORK/memory-run t=$WORK/memory-tiny
	f=$(playbook "$steps" mixed)
	gen_spawn "$d" --steps 0 --skipped "$steps"
	gen_spawn "$t" --steps 0 --skipped 1
	side irp_validate "$IRP" validate "$f"
	side irp_validate_1 "$IRP" validate "$t/irp.yaml"
	race "$(few_runs)" || true
	mem_row "irp validate, mixed playbook" "$steps" irp_validate irp_validate_1
	side irp_run "$IRP" run --quiet --runs "$RUNS" "$d/irp.yaml"
	side irp_run_1 "$IRP" run --quiet --runs "$RUNS" "$t/irp.yaml"
	RACE_PREP=prep_side
	race "$(few_runs)" || true
	mem_row "irp run, every step when:false $(on_fs)" "$steps" irp_run irp_run_1
}
