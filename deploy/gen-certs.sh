#!/usr/bin/env bash
# gen-certs.sh: certificates for a parley federation, with the openssl CLI.
# Run with --help for the usage; deploy/README.md explains it in full.
set -euo pipefail

prog=$(basename "$0")

usage() {
	cat <<EOF
Usage: $prog [OPTION]... DIR [NAME]...

Creates a federation CA in DIR (ca.pem, ca.key; EC P-256, or RSA 2048 with
--rsa; 10 years) unless it is already there, then a key and a CA-signed
certificate for each node NAME: DIR/NAME.pem and DIR/NAME.key. A node
certificate carries subjectAltName DNS:NAME and CN=NAME, and the extended
key usages serverAuth and clientAuth (a node is a TLS server to its peers
and a client of them).

Files that already exist are kept, so running it again is harmless (a
certificate that no longer verifies against the CA in DIR is an error:
delete it to make a new one). Keys are written mode 0600.

Options:
  --days N            validity of new node certificates, in days (default 825)
  --rsa               new keys are RSA 2048 instead of EC P-256
  -h, --help          this text

Certificates for negative tests (each may be repeated; NAME need not be
listed as a node):
  --expired NAME      DIR/NAME-expired.{pem,key}: signed by the CA, SAN NAME,
                      valid from 2020-01-01 to 2021-01-01 (in the past)
  --other-ca NAME     DIR/NAME-other-ca.{pem,key}: SAN NAME, signed by a
                      second CA, DIR/other-ca.{pem,key} (created if absent),
                      whose subject name is the same as the real CA's
  --cn-only NAME      DIR/NAME-cn-only.{pem,key}: signed by the CA, CN=NAME
                      and no subjectAltName (its identity is the CN)
  --wrong-name NAME AS
                      DIR/NAME-as-AS.{pem,key}: signed by the CA, CN=NAME but
                      SAN DNS:AS (its identity is AS, not NAME)

Example:
  $prog certs a.example b.example c.example
  $prog certs --expired b.example --other-ca b.example
EOF
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

usage_error() {
	echo "$prog: $*" >&2
	echo "Try '$prog --help'." >&2
	exit 2
}

# A node name is DNS-style: labels of letters, digits and '-', joined by
# '.', at most 253 bytes. Anything else (a '/', a leading '-') could escape
# DIR or be read as an option, so it is refused.
check_name() {
	local n=$1
	if [ ${#n} -lt 1 ] || [ ${#n} -gt 253 ] ||
		! [[ $n =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$ ]]; then
		usage_error "invalid node name '$n' (want a DNS name such as a.example)"
	fi
	case $n in
	ca | other-ca) usage_error "'$n' is reserved for the CA files" ;;
	esac
}

days=825
keyalg=ec
dir=""
nodes=()
expired=()
otherca=()
cnonly=()
wrong=() # pairs: NAME AS NAME AS ...

while [ $# -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--days)
		[ $# -ge 2 ] || usage_error "--days needs a number"
		[[ $2 =~ ^[1-9][0-9]{0,4}$ ]] || usage_error "--days: '$2' is not a number of days"
		days=$2
		shift 2
		;;
	--rsa)
		keyalg=rsa
		shift
		;;
	--expired | --other-ca | --cn-only)
		[ $# -ge 2 ] || usage_error "$1 needs a NAME"
		check_name "$2"
		case $1 in
		--expired) expired+=("$2") ;;
		--other-ca) otherca+=("$2") ;;
		--cn-only) cnonly+=("$2") ;;
		esac
		shift 2
		;;
	--wrong-name)
		[ $# -ge 3 ] || usage_error "--wrong-name needs NAME and AS"
		check_name "$2"
		check_name "$3"
		[ "$2" != "$3" ] || usage_error "--wrong-name: NAME and AS must differ"
		wrong+=("$2" "$3")
		shift 3
		;;
	--)
		shift
		break
		;;
	-*) usage_error "unknown option '$1'" ;;
	*)
		if [ -z "$dir" ]; then
			dir=$1
		else
			check_name "$1"
			nodes+=("$1")
		fi
		shift
		;;
	esac
done
while [ $# -gt 0 ]; do
	if [ -z "$dir" ]; then
		dir=$1
	else
		check_name "$1"
		nodes+=("$1")
	fi
	shift
done
[ -n "$dir" ] || usage_error "missing DIR"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

mkdir -p -- "$dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/gen-certs.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# new_key FILE: a fresh private key, mode 0600 from the start (umask), moved
# into place only when complete.
new_key() {
	local out=$1 tmp
	tmp=$(
		umask 077
		mktemp "$out.XXXXXX"
	)
	if [ "$keyalg" = rsa ]; then
		(umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp" 2>/dev/null)
	else
		(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp" 2>/dev/null)
	fi
	chmod 0600 "$tmp"
	mv -f -- "$tmp" "$out"
}

# key_usage: the keyUsage a new leaf needs (RSA keys also encipher).
key_usage() {
	if [ "$keyalg" = rsa ]; then
		echo "critical,digitalSignature,keyEncipherment"
	else
		echo "critical,digitalSignature"
	fi
}

# make_ca BASE CN: DIR/BASE.pem and DIR/BASE.key, a self-signed CA valid 10
# years, unless both exist.
make_ca() {
	local base=$1 cn=$2
	local pem="$dir/$base.pem" key="$dir/$base.key"
	if [ -s "$pem" ] && [ -s "$key" ]; then
		return 0
	fi
	[ ! -e "$pem" ] || die "$pem exists without $key: remove it to make a new CA"
	[ ! -e "$key" ] || die "$key exists without $pem: remove it to make a new CA"
	cat >"$work/$base.ext" <<EOF
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
	new_key "$work/$base.key"
	openssl req -new -x509 -sha256 -days 3650 -key "$work/$base.key" \
		-subj "/O=parley federation/CN=$cn" \
		-config "$work/$base.ext" -extensions ca_ext \
		-set_serial "0x$(openssl rand -hex 16)" \
		-out "$work/$base.pem" 2>/dev/null ||
		die "openssl could not create the CA $base"
	chmod 0644 "$work/$base.pem"
	mv -f -- "$work/$base.key" "$key"
	mv -f -- "$work/$base.pem" "$pem"
	echo "$prog: created CA $pem"
}

# leaf_ext FILE SAN: writes the extension section [leaf] for a node
# certificate (SAN empty: none).
leaf_ext() {
	local f=$1 san=$2
	{
		echo "[leaf]"
		echo "basicConstraints = critical,CA:FALSE"
		echo "keyUsage = $(key_usage)"
		echo "extendedKeyUsage = serverAuth,clientAuth"
		echo "subjectKeyIdentifier = hash"
		echo "authorityKeyIdentifier = keyid,issuer"
		if [ -n "$san" ]; then
			echo "subjectAltName = DNS:$san"
		fi
	} >"$f"
}

# make_leaf BASE CA CN SAN [expired]: DIR/BASE.pem and DIR/BASE.key, signed
# by DIR/CA.pem, unless both exist and the certificate verifies.
make_leaf() {
	local base=$1 ca=$2 cn=$3 san=$4 mode=${5:-}
	local pem="$dir/$base.pem" key="$dir/$base.key"
	local capem="$dir/$ca.pem" cakey="$dir/$ca.key"
	if [ -s "$pem" ] && [ -s "$key" ]; then
		if [ "$mode" = expired ] ||
			openssl verify -CAfile "$capem" -purpose sslclient "$pem" >/dev/null 2>&1; then
			return 0
		fi
		die "$pem does not verify against $capem (made by another CA?): remove $pem and $key to make a new one"
	fi
	[ ! -e "$pem" ] || die "$pem exists without $key: remove it to make a new one"
	[ ! -e "$key" ] || die "$key exists without $pem: remove it to make a new one"

	new_key "$work/$base.key"
	openssl req -new -sha256 -key "$work/$base.key" -subj "/CN=$cn" \
		-out "$work/$base.csr" 2>/dev/null || die "openssl could not make a request for $base"
	leaf_ext "$work/$base.ext" "$san"

	if [ "$mode" = expired ]; then
		# x509 -req cannot set a start date in openssl 3.0; "openssl ca"
		# can, with a throwaway database (it needs no network).
		local db="$work/db-$base"
		mkdir -p "$db"
		: >"$db/index.txt"
		openssl rand -hex 16 >"$db/serial"
		cat >"$db/ca.cnf" <<EOF
[ca]
default_ca = expired_ca
[expired_ca]
database = $db/index.txt
serial = $db/serial
new_certs_dir = $db
certificate = $capem
private_key = $cakey
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
commonName = supplied
EOF
		openssl ca -batch -notext -config "$db/ca.cnf" \
			-startdate 20200101000000Z -enddate 20210101000000Z \
			-extfile "$work/$base.ext" -extensions leaf \
			-in "$work/$base.csr" -out "$work/$base.pem" >/dev/null 2>"$db/err" ||
			die "openssl ca failed for $base: $(cat "$db/err")"
	else
		openssl x509 -req -sha256 -days "$days" -in "$work/$base.csr" \
			-CA "$capem" -CAkey "$cakey" \
			-set_serial "0x$(openssl rand -hex 16)" \
			-extfile "$work/$base.ext" -extensions leaf \
			-out "$work/$base.pem" 2>/dev/null || die "openssl could not sign $base"
	fi
	chmod 0644 "$work/$base.pem"
	mv -f -- "$work/$base.key" "$key"
	mv -f -- "$work/$base.pem" "$pem"
	echo "$prog: created $pem (CN=$cn${san:+, SAN DNS:$san}, issuer $ca${mode:+, $mode})"
}

make_ca ca "parley federation CA"
for n in ${nodes[@]+"${nodes[@]}"}; do
	make_leaf "$n" ca "$n" "$n"
done
for n in ${expired[@]+"${expired[@]}"}; do
	make_leaf "$n-expired" ca "$n" "$n" expired
done
if [ ${#otherca[@]} -gt 0 ]; then
	make_ca other-ca "parley federation CA"
	for n in "${otherca[@]}"; do
		make_leaf "$n-other-ca" other-ca "$n" "$n"
	done
fi
for n in ${cnonly[@]+"${cnonly[@]}"}; do
	make_leaf "$n-cn-only" ca "$n" ""
done
i=0
while [ $i -lt ${#wrong[@]} ]; do
	make_leaf "${wrong[$i]}-as-${wrong[$((i + 1))]}" ca "${wrong[$i]}" "${wrong[$((i + 1))]}"
	i=$((i + 2))
done
